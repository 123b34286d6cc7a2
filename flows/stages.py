"""One Prefect flow per DVC stage (``<stage>_flow``): what ``dvc repro`` runs, one process per
stage (``catdog stage NAME``), and what ``catdog run`` runs as child flow runs of one pipeline run.

Each flow runs its stage's task inside the stage's MLflow child run, records the run's lineage and
results, and, for evaluate, promotes the champion in a task of its own. The flows never decide
whether a stage is stale, nor record it as done: DVC does (``dvc.lock``), for ``dvc repro`` itself,
for ``catdog run`` through :mod:`workspace.dvc_state`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow, task

from catdog import stage_table
from catdog.errors import CatdogError
from catdog.params import Params, load_params
from catdog.results import StageResult
from servers.dask import local_task_runner
from tasks.common import TASK_OPTIONS, run_logger
from tracking.lineage import record_lineage
from tracking.registry import promote_champion
from tracking.runs import (
    Execution,
    epoch_logger,
    finish_execution,
    log_stage_result,
    open_execution,
    read_model_results,
    stage_run,
)
from workspace.lock import run_owner
from workspace.params_file import PARAMS_FILE
from workspace.paths import tracking_home

__all__ = ["STAGE_FLOWS", "StageRun", "current_flow_run_id", "lineage_params_values", "trigger"]


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
    run_id: str  # the stage's MLflow child run

    def epoch_logger(self) -> Callable[[int, Mapping[str, float]], None]:
        """Per-epoch metrics to the stage's MLflow run."""
        return epoch_logger(self.run_id)

    def record(self, result: StageResult) -> StageResult:
        """Log what the stage made to its MLflow run: lineage, params, metrics, artifacts."""
        record_lineage(self.name, self.root)
        log_stage_result(result, lineage_params_values(self.params, self.name))
        client = MlflowClient()
        for warning in result.warnings:
            run_logger().warning("%s: %s", self.name, warning)
        if result.warnings:  # loud on the parent run too: the whole execution is affected
            client.set_tag(self.execution.run_id, "catdog.warning", " | ".join(result.warnings))
        if "weights" in result.tags:
            client.set_tag(self.execution.run_id, "weights", result.tags["weights"])
        return result

    def tag(self, tags: Mapping[str, str]) -> None:
        """Tag the stage's run and its execution's parent run."""
        mlflow.set_tags(dict(tags))
        for key, value in tags.items():
            MlflowClient().set_tag(self.execution.run_id, key, value)


def stage_flow(name: str) -> Callable[[Callable[[StageRun], None]], Any]:
    """Make ``work`` the Prefect flow of stage ``name``, run inside the stage's MLflow run.

    The flow loads ``params.yaml``, finds its execution's MLflow parent run (``execution_key``
    when the pipeline flow passes one, else by the DVC process it runs under) and opens the
    stage's child run around ``work``.
    """

    def decorate(work: Callable[[StageRun], None]) -> Any:
        def run(root: str = ".", execution_key: str = "") -> str:
            workspace = Path(root).resolve()
            params = load_params(workspace / PARAMS_FILE, display=PARAMS_FILE)
            how = "catdog run" if execution_key else trigger()
            execution = open_execution(
                tracking_home(workspace),
                workspace,
                params.mlflow.experiment,
                trigger=how,
                owner=run_owner(how),
                key=execution_key,
            )
            tags = {
                "weights.requested": params.features.weights,
                "prefect.flow_run_id": current_flow_run_id(),
            }
            with stage_run(execution, name, workspace, tags) as child:
                try:
                    work(StageRun(name, params, workspace, execution, child.info.run_id))
                except CatdogError as error:  # the flow run's logs say what to do, in one line
                    run_logger().error("catdog: error: %s", error)
                    raise
            if not execution_key:  # the pipeline flow finishes its own parent run
                finish_execution(execution)
            return execution.run_id

        # not functools.wraps: Prefect reads the parameters from the signature it would copy
        run.__name__ = run.__qualname__ = work.__name__
        run.__doc__ = f"The {name} stage: {stage_table.stage(name).description}"
        return flow(
            name=f"catdog-{name}",
            log_prints=True,
            validate_parameters=False,
            task_runner=local_task_runner(),  # a Dask cluster instead: servers.dask
        )(run)

    return decorate


@task(name="promote-champion", **TASK_OPTIONS)
def promote_champion_task(root: Path, threshold: float) -> dict[str, str]:
    """Move the registry's ``champion`` alias to the best model on the test set."""
    return promote_champion(root, read_model_results(root), threshold)


@stage_flow("ingest")
def ingest_flow(run: StageRun) -> None:
    from tasks.ingest import ingest  # here, so a stage's process imports its own task only

    run.record(ingest(run.params, run.root))


@stage_flow("split")
def split_flow(run: StageRun) -> None:
    from tasks.split import split  # here, so a stage's process imports its own task only

    run.record(split(run.params, run.root))


@stage_flow("augment")
def augment_flow(run: StageRun) -> None:
    from tasks.augment import augment  # here, so a stage's process imports its own task only

    run.record(augment(run.params, run.root))


@stage_flow("features")
def features_flow(run: StageRun) -> None:
    from tasks.features import features  # here, so a stage's process imports its own task only

    run.record(features(run.params, run.root))


@stage_flow("classifier")
def classifier_flow(run: StageRun) -> None:
    from tasks.classifier import classifier  # here, so a stage's process imports its own task only

    run.record(classifier(run.params, run.root, on_epoch_end=run.epoch_logger()))


@stage_flow("finetune")
def finetune_flow(run: StageRun) -> None:
    from tasks.finetune import finetune  # here, so a stage's process imports its own task only

    run.record(finetune(run.params, run.root, on_epoch_end=run.epoch_logger()))


@stage_flow("scratch")
def scratch_flow(run: StageRun) -> None:
    from tasks.scratch import scratch  # here, so a stage's process imports its own task only

    run.record(scratch(run.params, run.root, on_epoch_end=run.epoch_logger()))


@stage_flow("evaluate")
def evaluate_flow(run: StageRun) -> None:
    from tasks.evaluate import evaluate  # here, so a stage's process imports its own task only

    run.record(evaluate(run.params, run.root))
    run.tag(promote_champion_task(run.root, run.params.evaluate.threshold))


STAGE_FLOWS: dict[str, Any] = {
    "ingest": ingest_flow,
    "split": split_flow,
    "augment": augment_flow,
    "features": features_flow,
    "classifier": classifier_flow,
    "finetune": finetune_flow,
    "scratch": scratch_flow,
    "evaluate": evaluate_flow,
}
