"""One Prefect flow per DVC stage (``<stage>_flow``), and the code both they and the pipeline
flow use to run a stage inside its MLflow child run."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow

from catdog import stage_table as pipeline
from catdog.params import Params, load_params
from catdog.results import StageResult
from tasks.common import run_logger
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
from workspace.paths import tracking_home

__all__ = ["STAGE_FLOWS", "current_flow_run_id", "params_slice", "run_stage", "stage_task"]


def stage_task(name: str) -> Callable[..., StageResult]:
    """The Prefect task of a stage (imported lazily: ingest and split never load TensorFlow)."""
    pipeline.stage(name)  # unknown names fail here with the list of stages
    module = importlib.import_module(f"tasks.{name}")
    return getattr(module, name)


def params_slice(params: Params, s: pipeline.Stage) -> dict[str, Any]:
    """Exactly the params a stage declares, keyed as in dvc.yaml (e.g. ``data.image_size``)."""
    out: dict[str, Any] = {}
    for key in s.params:
        value = params.section(key)
        out[key] = value.model_dump() if hasattr(value, "model_dump") else value
    return out


def run_stage(name: str, params: Params, root: Path, execution: Execution) -> StageResult:
    """Run one stage's task inside an MLflow child run and log what it produced."""
    s = pipeline.stage(name)
    task = stage_task(name)
    tags = {
        "weights.requested": params.features.weights,
        "prefect.flow_run_id": current_flow_run_id(),
    }
    with stage_run(execution, name, root, tags) as run:
        kwargs: dict[str, Any] = {}
        if name in pipeline.MODELS:
            kwargs["on_epoch_end"] = epoch_logger(run.info.run_id)
        result = task(params, root, **kwargs)
        record_lineage(name, root)
        log_stage_result(result, params_slice(params, s))
        if name == "evaluate":
            champion = promote_champion(root, read_model_results(root), params.evaluate.threshold)
            mlflow.set_tags(champion)
            for key, value in champion.items():  # the parent run names its champion too
                MlflowClient().set_tag(execution.run_id, key, value)
    for warning in result.warnings:
        run_logger().warning("%s: %s", name, warning)
    if result.warnings:  # loud on the parent run too: the whole execution is affected
        MlflowClient().set_tag(execution.run_id, "catdog.warning", " | ".join(result.warnings))
    if "weights" in result.tags:
        MlflowClient().set_tag(execution.run_id, "weights", result.tags["weights"])
    return result


def current_flow_run_id() -> str:
    """The Prefect flow run this stage runs in ('' outside one), for lineage."""
    from prefect.runtime import flow_run

    return str(flow_run.id or "")


def _trigger() -> str:
    """What ran this stage, as the parent run's name says (DVC sets DVC_STAGE, DVC_EXP_NAME)."""
    if os.environ.get("DVC_EXP_NAME"):
        return "dvc exp run"
    return "dvc repro" if os.environ.get("DVC_STAGE") else "catdog stage"


def _make_stage_flow(name: str) -> Any:
    def stage_flow(
        root: str = ".", params_path: str = "params.yaml", overrides: Sequence[str] = ()
    ) -> dict[str, float]:
        workspace = Path(root).resolve()
        params = load_params(workspace / params_path, overrides)
        execution = open_execution(
            tracking_home(workspace),
            workspace,
            params.mlflow.experiment,
            trigger=_trigger(),
        )
        result = run_stage(name, params, workspace, execution)
        finish_execution(execution)
        return result.metrics

    stage_flow.__name__ = f"{name}_flow"
    stage_flow.__doc__ = f"The {name} stage: {pipeline.stage(name).description}"
    from servers.dask import local_task_runner  # a Dask cluster instead: servers.dask

    return flow(
        name=f"catdog-{name}",
        log_prints=True,
        validate_parameters=False,
        task_runner=local_task_runner(),
    )(stage_flow)


STAGE_FLOWS: dict[str, Any] = {name: _make_stage_flow(name) for name in pipeline.STAGE_NAMES}

ingest_flow = STAGE_FLOWS["ingest"]
split_flow = STAGE_FLOWS["split"]
augment_flow = STAGE_FLOWS["augment"]
features_flow = STAGE_FLOWS["features"]
classifier_flow = STAGE_FLOWS["classifier"]
finetune_flow = STAGE_FLOWS["finetune"]
scratch_flow = STAGE_FLOWS["scratch"]
evaluate_flow = STAGE_FLOWS["evaluate"]
