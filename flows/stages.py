"""One Prefect flow per DVC stage (``<stage>_flow``), built from the stage table's rows: what
``dvc repro`` runs, one process per stage (``catdog stage NAME``), and what ``catdog run`` runs
as child flow runs of one pipeline run.

Each flow runs its stage's task inside the stage's MLflow child run, records the run's lineage and
results, and, for evaluate, promotes the champion in a task of its own. The flows never decide
whether a stage is stale, nor record it as done: DVC does (``dvc.lock``), for ``dvc repro`` itself,
for ``catdog run`` through :mod:`catdog.workspace.dvc_state`.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from catdog import stage_table
from catdog.errors import CatdogError, StorageError
from catdog.intervals import noise_sentence
from catdog.manifest import read_manifest, split_rows
from catdog.params import EvaluateParams, Params, load_params
from catdog.results import StageResult
from catdog.servers.dask import local_task_runner
from catdog.servers.health import prefect_watch
from catdog.tracking.champion import promote_champion
from catdog.tracking.lineage import manifest_dataset, record_lineage
from catdog.tracking.registry import describe_version, log_test_metrics, workspace_version
from catdog.tracking.runs import (
    Execution,
    epoch_logger,
    finish_execution,
    log_stage_result,
    open_execution,
    read_model_results,
    stage_run,
)
from catdog.tracking.store import run_url
from catdog.vocabulary import COMPARISON, EVALUATE_FIGURES, MANIFEST, METRICS, PREDICTIONS_DIR
from catdog.workspace.execution import describe_execution
from catdog.workspace.lock import run_owner
from catdog.workspace.params_file import PARAMS_FILE
from catdog.workspace.paths import tracking_home
from catdog.workspace.storage import storage_fault_message
from tasks.common import TASK_OPTIONS, run_logger

__all__ = [
    "STAGE_FLOWS",
    "StageRun",
    "current_flow_run_id",
    "deployment_name",
    "lineage_params_values",
    "pipeline_trigger",
    "trigger",
]


def lineage_params_values(params: Params, stage: str) -> dict[str, Any]:
    """The values of every param the stage's result depends on, keyed as in ``dvc.yaml``."""
    out: dict[str, Any] = {}
    for key in stage_table.lineage_params(stage):
        value = params.section(key)
        out[key] = value.model_dump() if hasattr(value, "model_dump") else value
    return out


def current_flow_run_id() -> str:
    """The Prefect flow run this code runs in ('' outside one), for lineage."""
    from prefect.runtime import flow_run

    return str(flow_run.id or "")


def current_flow_run_url() -> str:
    """The Prefect UI's page of the flow run this code runs in ('' outside one)."""
    from prefect.runtime import flow_run

    return str(flow_run.ui_url or "") if flow_run.id else ""


def deployment_name() -> str:
    """The Prefect deployment whose run this is ('' when none started it: ``catdog run``)."""
    from prefect.runtime import deployment

    return str(deployment.name or "") if deployment.id else ""


RUN_TRIGGER = "catdog run"
DEPLOYMENT_TRIGGER = "prefect deployment"


def pipeline_trigger() -> str:
    """What started the pipeline flow run this code runs in, as its MLflow runs say."""
    return DEPLOYMENT_TRIGGER if deployment_name() else RUN_TRIGGER


def trigger() -> str:
    """What runs this stage, as its MLflow runs say (DVC sets DVC_STAGE and DVC_EXP_NAME)."""
    if os.environ.get("DVC_EXP_NAME"):
        return "dvc exp run"
    return "dvc repro" if os.environ.get("DVC_STAGE") else "catdog stage"


@dataclass
class StageRun:
    """What a stage's flow works with: its params, workspace, and MLflow runs."""

    name: str
    params: Params
    root: Path
    execution: Execution
    run: mlflow.ActiveRun  # the stage's MLflow child run
    result: StageResult | None = None  # once recorded

    def epoch_logger(self) -> Callable[[int, Mapping[str, float]], None]:
        """Per-epoch metrics to the stage's MLflow run; training stops if the Prefect server that
        would record it has gone."""
        log, prefect_alive = epoch_logger(self.run.info.run_id), prefect_watch()

        def each_epoch(epoch: int, logs: Mapping[str, float]) -> None:
            log(epoch, logs)
            prefect_alive()

        return each_epoch

    def record(self, result: StageResult) -> StageResult:
        """Log what the stage made to its MLflow run (lineage, params, metrics, artifacts) and
        publish Prefect artifacts: a link to that run, and a model stage's history."""
        record_lineage(self.name, self.root)
        log_stage_result(result, lineage_params_values(self.params, self.name))
        client = MlflowClient()
        for warning in result.warnings:
            run_logger().warning("%s: %s", self.name, warning)
        if result.warnings:  # loud on the parent run too: the whole execution is affected
            client.set_tag(self.execution.run_id, "catdog.warning", " | ".join(result.warnings))
        if "weights" in result.tags:
            client.set_tag(self.execution.run_id, "weights", result.tags["weights"])
        publish_run_link(self.name, self.run, self.execution.label)
        if result.history:
            publish_history(self.name, result)
        self.result = result
        return result

    def log_to_execution(self, metrics: Mapping[str, float]) -> None:
        """Log metrics to the execution's parent run too."""
        now = int(time.time() * 1000)
        finite = [Metric(k, v, now, 0) for k, v in metrics.items() if math.isfinite(v)]
        MlflowClient().log_batch(self.execution.run_id, metrics=finite)

    def tag(self, tags: Mapping[str, str]) -> None:
        """Tag the stage's run and its execution's parent run."""
        mlflow.set_tags(dict(tags))
        for key, value in tags.items():
            MlflowClient().set_tag(self.execution.run_id, key, value)


def publish_run_link(stage: str, run: mlflow.ActiveRun, label: str) -> None:
    """A Prefect link artifact to the stage's MLflow run (key ``catdog-<stage>-mlflow-run``)."""
    url = run_url(run.info.experiment_id, run.info.run_id)
    local = not mlflow.get_tracking_uri().startswith(("http://", "https://"))
    create_link_artifact(
        key=f"catdog-{stage}-mlflow-run",
        link=url,
        link_text=f"MLflow run: {stage} · {label}",
        description=f"{stage}'s params, per-epoch metrics, plots and model in MLflow"
        + (" (open `catdog ui` first: the project's local store)" if local else ""),
    )


def publish_history(stage: str, result: StageResult) -> None:
    """The model's training history as a Prefect table artifact, kept epoch first in words."""
    history = result.history or {}
    best = int(result.metrics.get("best_epoch", 0))
    rows = [
        {"epoch": epoch + 1, **{k: round(v[epoch], 4) for k, v in history.items()}}
        for epoch in range(len(next(iter(history.values()), [])))
    ]
    summary = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.startswith("best_"))
    create_table_artifact(
        key=f"catdog-{stage}-history",
        table=rows,
        description=f"{stage}: kept epoch {best} of {len(rows)} ({summary})",
    )


def run_stage(name: str, root: str, execution_key: str, label: str) -> str:
    """The body of stage ``name``'s flow: load ``params.yaml``, find the execution's MLflow
    parent run (``execution_key`` when the pipeline flow passes one, else by the DVC process it
    runs under), run the stage's task (and what follows it, :data:`AFTER_TASK`) inside the
    stage's child run; return the parent run's id.
    ``label`` only names the flow run in Prefect's UI."""
    workspace = Path(root).resolve()
    params = load_params(workspace / PARAMS_FILE, display=PARAMS_FILE)
    how = pipeline_trigger() if execution_key else trigger()
    info = describe_execution(workspace, how, run_owner(how), deployment_name())
    execution = open_execution(
        tracking_home(workspace),
        workspace,
        params.mlflow.experiment,
        info,
        key=execution_key,
        params=params.model_dump(),
    )
    tags = {
        "weights.requested": params.features.weights,
        "prefect.flow_run_id": current_flow_run_id(),
        "prefect.flow_run_url": current_flow_run_url(),
    }
    started = time.perf_counter()
    with stage_run(execution, name, workspace, tags) as child:
        stage = StageRun(name, params, workspace, execution, child)
        try:
            result = run_task(stage)
            if name in AFTER_TASK:
                AFTER_TASK[name](stage, result)
        except CatdogError as error:  # the flow run's logs say what to do, in one line
            run_logger().error("catdog: error: %s", error)
            raise
        except OSError as error:  # a full or read-only disk is the user's to fix too
            message = storage_fault_message(error)
            if not message:
                raise
            run_logger().error("catdog: error: %s", message)
            raise StorageError(message) from error
    summary = stage.result.summary if stage.result else ""
    elapsed = time.perf_counter() - started
    run_logger().info("%s: done in %.1f s%s", name, elapsed, f": {summary}" * bool(summary))
    if not execution_key:  # the pipeline flow finishes its own parent run
        finish_execution(execution)
    return execution.run_id


def stage_flow(name: str) -> Any:
    """The Prefect flow ``catdog-<name>`` of a row of the stage table (see :func:`run_stage`)."""

    def run(root: str = ".", execution_key: str = "", label: str = "") -> str:
        return run_stage(name, root, execution_key, label)

    # Prefect reads the parameters from this signature, and shows the name and docstring
    run.__name__ = run.__qualname__ = f"{name}_flow"
    run.__doc__ = f"The {name} stage: {stage_table.stage(name).description}"

    def flow_run_name() -> str:  # which stage of which execution, in Prefect's UI
        from prefect.runtime import flow_run

        label = flow_run.parameters.get("label", "")
        return f"{name} · {label}" if label else name

    return flow(
        name=f"catdog-{name}",
        flow_run_name=flow_run_name,
        log_prints=True,
        validate_parameters=False,
        persist_result=False,  # DVC keeps the outputs; Prefect's copy would be a second store
        task_runner=local_task_runner(),  # a Dask cluster instead: catdog.servers.dask
    )(run)


@task(name="record-models-worth", **TASK_OPTIONS)
def record_models_worth_task(root: Path) -> None:
    """Each model's test metrics on its logged model and registry version (MLflow 3)."""
    results = read_model_results(root)
    dataset = manifest_dataset(root, "test")
    images = len(dataset.df)
    for stage, metrics in results.items():
        version = workspace_version(stage, root)
        log_test_metrics(version, metrics, dataset)
        describe_version(version, metrics, images)
        heatmaps = gradcam_figure(root, stage)
        if heatmaps.is_file():  # beside the model, in the run that trained it
            MlflowClient().log_artifact(version.run_id, str(heatmaps), "gradcam")


@task(name="promote-champion", **TASK_OPTIONS)
def promote_champion_task(root: Path, evaluate: EvaluateParams) -> dict[str, str]:
    """Score the champion on this test set; move it only to a model that beats it there."""
    test = split_rows(read_manifest(root / MANIFEST), "test")
    tags = promote_champion(
        root,
        read_model_results(root),
        test,
        evaluate.threshold,
        gate=evaluate.champion_gate,
        alpha=evaluate.champion_alpha,
    )
    run_logger().info("evaluate: %s", tags["champion.decision.text"])
    create_markdown_artifact(
        key="catdog-champion-decision",
        markdown=f"# Champion: {tags['champion.decision']}\n\n{tags['champion.decision.text']}"
        f"\n\n- rule: `{tags['champion.rule']}` (evaluate.champion_gate)\n"
        f"- one-sided p-value: {tags['champion.p_value']}\n"
        f"- images only one of them got right: {tags['champion.discordant']}\n"
        f"- serving: `models:/{tags['champion.serving']}`\n",
        description="Why the champion moved or stayed",
    )
    return tags


def _rounded(values: Mapping[str, float], digits: int = 4) -> dict[str, float]:
    return {k: round(v, digits) for k, v in values.items()}


def publish_evaluation(root: Path) -> None:
    """Evaluate's Prefect artifacts: every model's test metrics with their 95% intervals, the
    paired comparisons, and the comparison report."""
    document = json.loads((root / METRICS).read_text())
    images = document["test_images"]
    rows = [
        {"model": m, "test_images": images, **_rounded(metrics)}
        for m, metrics in read_model_results(root).items()
    ]
    create_table_artifact(
        key="catdog-test-metrics",
        table=rows,
        description=f"Test-set metrics with 95% intervals (_ci_low, _ci_high): "
        f"{noise_sentence(images)}",
    )
    pairs = [{"pair": key, **_rounded(values)} for key, values in document["pairs"].items()]
    create_table_artifact(
        key="catdog-paired-comparisons",
        table=pairs,
        description="Models compared on the same test images: accuracy difference (first minus "
        "second) with its 95% interval, discordant images, McNemar's exact p (two-sided)",
    )
    create_markdown_artifact(
        key="catdog-comparison", markdown=(root / COMPARISON).read_text(), description=COMPARISON
    )
    for model in read_model_results(root):
        figure = gradcam_figure(root, model)
        if figure.is_file():
            create_markdown_artifact(
                key=f"catdog-gradcam-{model}",
                markdown=f"# {model}: where it looked\n\n![Grad-CAM of {model}]"
                f"({_embedded_jpeg(figure)})\n\n`{figure.relative_to(root)}`, logged with "
                "the evaluate run and the model's own run in MLflow",
                description=f"Grad-CAM heatmaps of {model}'s worst mistakes and surest right "
                "answers on the test set",
            )


def gradcam_figure(root: Path, model: str) -> Path:
    """Evaluate's Grad-CAM grid of ``model`` (absent when ``evaluate.gradcam`` is 0)."""
    return root / EVALUATE_FIGURES / f"gradcam_{model}.png"


def _embedded_jpeg(path: Path, width: int = 900) -> str:
    """The picture as a JPEG ``data:`` URI at most ``width`` pixels wide, so a Prefect
    artifact shows it without a server to fetch it from."""
    from PIL import Image

    with Image.open(path) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((width, width * 4), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def run_task(run: StageRun) -> StageResult:
    """Run the stage's task (``tasks/<stage>.py``) with the params sections its row lists, and
    record what it made. Imported here, so a stage's process imports its own task only."""
    row = stage_table.stage(run.name)
    module, function = row.task
    task = getattr(importlib.import_module(module), function)
    extra = {"on_epoch_end": run.epoch_logger()} if row.logs_epochs else {}
    return run.record(task(run.root, **row.task_arguments(run.params), **extra))


def finish_evaluation(run: StageRun, result: StageResult) -> None:
    """After evaluate: test metrics on the parent run, per-image answers (so `catdog compare`
    can pair executions scored on the same images), Prefect artifacts, the models' worth, and the
    champion's promotion as a task of its own."""
    run.log_to_execution(result.metrics)
    mlflow.log_artifacts(str(run.root / PREDICTIONS_DIR), artifact_path="predictions")
    publish_evaluation(run.root)
    record_models_worth_task(run.root)
    run.tag(promote_champion_task(run.root, run.params.evaluate))


#: What a stage's flow does after its task, beyond recording the result.
AFTER_TASK: dict[str, Callable[[StageRun, StageResult], None]] = {"evaluate": finish_evaluation}


#: One flow per row of the stage table.
STAGE_FLOWS: dict[str, Any] = {s.name: stage_flow(s.name) for s in stage_table.STAGES}
# Prefect entrypoints name a module attribute: `flows/stages.py:<stage>_flow`.
globals().update({f"{name}_flow": each for name, each in STAGE_FLOWS.items()})
