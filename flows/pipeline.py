"""The whole pipeline as one Prefect flow run, a task run per stage that is not up to date.

A stage is up to date when its code, data and params (exactly the ones ``dvc.yaml`` declares,
from the same table) hash as they did when it last ran here, and its outputs are still the ones
it wrote. The stamps live in ``.catdog/stamps/``; outputs are written atomically and a stamp only
after them, so an interrupted stage is simply run again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow

from catdog import stage_table as pipeline
from catdog.io import write_json
from catdog.params import Params, load_params
from catdog.weights import resolve_weights
from flows.stages import current_flow_run_id, params_slice, run_stage
from servers.dask import local_task_runner
from tasks.common import run_logger
from tasks.ingest import source_path
from tracking.runs import finish_execution, open_execution
from workspace.paths import state_dir, tracking_home

__all__ = ["is_up_to_date", "pipeline_flow", "stage_fingerprint"]


def _stamp_path(workspace: Path, name: str) -> Path:
    return state_dir(workspace) / "stamps" / f"{name}.json"


def stage_fingerprint(name: str, params: Params, workspace: Path) -> dict[str, Any]:
    """What the stage's result depends on, as hashes and values."""
    s = pipeline.stage(name)
    extra = []
    if name == "ingest":
        source = source_path(params, workspace)
        extra = [source] if source is not None else []
    return pipeline.fingerprint(s, workspace, params_slice(params, s), extra)


def _outputs(name: str, workspace: Path) -> dict[str, str | None]:
    return {p: pipeline.hash_path(workspace / p) for p in pipeline.stage(name).all_outs}


def is_up_to_date(name: str, params: Params, workspace: Path) -> bool:
    """True if the stage ran here with the same inputs and its outputs are untouched."""
    stamp = _stamp_path(workspace, name)
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text())
    outputs = _outputs(name, workspace)
    return (
        recorded.get("fingerprint") == stage_fingerprint(name, params, workspace)
        and None not in outputs.values()
        and recorded.get("outputs") == outputs
    )


def _write_stamp(name: str, params: Params, workspace: Path) -> None:
    write_json(
        _stamp_path(workspace, name),
        {
            "fingerprint": stage_fingerprint(name, params, workspace),
            "outputs": _outputs(name, workspace),
        },
    )


@flow(
    name="catdog-pipeline",
    log_prints=True,
    validate_parameters=False,
    task_runner=local_task_runner(),  # a Dask cluster instead: servers.dask
)
def pipeline_flow(
    root: str = ".",
    params_path: str = "params.yaml",
    overrides: Sequence[str] = (),
    force: bool = False,
) -> dict[str, str]:
    """Run every stage that is not up to date, in order; return each stage's fate."""
    workspace = Path(root).resolve()
    params = load_params(workspace / params_path, overrides)
    logger = run_logger()
    # Fail before any work if explicit weights cannot be had (features would fail later).
    resolve_weights(params.features.weights, root=workspace)
    execution = None
    fates: dict[str, str] = {}
    for name in pipeline.STAGE_NAMES:
        if not force and is_up_to_date(name, params, workspace):
            logger.info("%s: up to date, skipped", name)
            fates[name] = "skipped"
            continue
        if execution is None:
            execution = open_execution(
                tracking_home(workspace),
                workspace,
                params.mlflow.experiment,
                trigger="catdog run",
                key=f"catdog-run:{current_flow_run_id()}",
            )
        stamp = _stamp_path(workspace, name)
        stamp.unlink(missing_ok=True)
        logger.info("%s: running", name)
        run_stage(name, params, workspace, execution)
        _write_stamp(name, params, workspace)
        fates[name] = "ran"
    if execution is not None:
        finish_execution(execution)
    return fates
