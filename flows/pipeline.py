"""The whole pipeline as one Prefect flow run (``catdog run``): a child flow run per stage that DVC
finds stale, each recorded in ``dvc.lock`` as soon as it finishes.

DVC decides (:mod:`workspace.dvc_state`): a stage runs when its code, data or params differ from
what ``dvc.lock`` recorded, or its outputs are missing or modified, exactly as for ``dvc repro``;
a stage whose inputs ran before is restored from DVC's run cache instead. ``params.yaml`` holds the
run's params (a preset and ``-S`` overrides are written into it first, as ``dvc exp run -S`` does).
The run holds the workspace and DVC's repository lock throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import flow, tags

from catdog import stage_table
from catdog.servers.dask import local_task_runner
from catdog.tracking.runs import finish_execution, open_execution
from catdog.weights import resolve_weights
from catdog.workspace.dvc_state import DvcRecord
from catdog.workspace.execution import describe_execution
from catdog.workspace.lock import hold_workspace, run_owner
from catdog.workspace.params_file import PARAMS_FILE, apply_params, require_params_unchanged
from catdog.workspace.paths import tracking_home
from flows.stages import STAGE_FLOWS, current_flow_run_id
from tasks.common import run_logger

__all__ = ["pipeline_flow"]

TRIGGER = "catdog run"


def _flow_run_name() -> str:
    """``pipeline · catdog run <time> <commit>``: the execution, in Prefect's UI."""
    from prefect.runtime import flow_run

    workspace = Path(flow_run.parameters.get("root", ".")).resolve()
    return f"pipeline · {describe_execution(workspace, TRIGGER, run_owner(TRIGGER)).label}"


@flow(
    name="catdog-pipeline",
    flow_run_name=_flow_run_name,
    log_prints=True,
    validate_parameters=False,
    persist_result=False,  # DVC keeps the outputs; Prefect's copy would be a second store
    task_runner=local_task_runner(),  # a Dask cluster instead: catdog.servers.dask
)
def pipeline_flow(
    root: str = ".",
    preset: str = "",
    overrides: Sequence[str] = (),
    force: bool = False,
) -> dict[str, str]:
    """Run every stage DVC finds stale, in order; return each stage's fate.

    Args:
        root: The workspace.
        preset: A params file to copy into ``params.yaml`` first ('' keeps it).
        overrides: ``KEY=VALUE`` strings written into ``params.yaml``, as ``dvc exp run -S``.
        force: Run every stage, even those DVC finds up to date.

    Returns:
        ``{stage: "ran" | "restored" | "up to date"}``.
    """
    workspace = Path(root).resolve()
    with hold_workspace(workspace, TRIGGER):
        record = DvcRecord(workspace)
        try:
            with record.locked():
                return _run_stale_stages(workspace, record, preset, overrides, force)
        finally:
            record.close()


def _run_stale_stages(
    workspace: Path, record: DvcRecord, preset: str, overrides: Sequence[str], force: bool
) -> dict[str, str]:
    update = apply_params(workspace, Path(preset) if preset else None, overrides)
    params = update.params
    snapshot = (workspace / PARAMS_FILE).read_bytes()  # what every stage of this run reads
    resolve_weights(params.features.weights, root=workspace)  # explicit weights: fail now
    info = describe_execution(workspace, TRIGGER, run_owner(TRIGGER))
    execution = None
    fates: dict[str, str] = {}
    for name in stage_table.STAGE_NAMES:
        require_params_unchanged(workspace, snapshot, name)
        if not force and not record.is_stale(name):
            fates[name] = "up to date"
        elif not force and record.restore(name):
            record.commit(name)
            fates[name] = "restored"  # from DVC's run cache, as `dvc repro` would
        else:
            if execution is None:
                execution = open_execution(
                    tracking_home(workspace),
                    workspace,
                    params.mlflow.experiment,
                    info,
                    key=f"catdog-run:{current_flow_run_id()}",
                    params=params.model_dump(),
                )
            with tags(*info.tags(), f"stage:{name}"):  # the UI filters one execution's runs
                STAGE_FLOWS[name](str(workspace), execution_key=execution.key, label=info.label)
            require_params_unchanged(workspace, snapshot, name)  # dvc.lock records what ran
            record.commit(name)
            fates[name] = "ran"
        run_logger().info("%s: %s", name, fates[name])
    if execution is not None:
        finish_execution(execution)
    return fates
