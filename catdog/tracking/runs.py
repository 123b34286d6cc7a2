"""MLflow runs: one parent run per pipeline execution, one child run per stage that ran.

Under ``dvc repro`` every stage is its own process; the stages of one execution find their shared
parent run through the DVC process they descend from (see :func:`open_execution`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from catdog.results import StageResult, flat
from catdog.stage_table import MODELS
from catdog.tracking import machine
from catdog.tracking.registry import REGISTERED_NAMES, tag_version
from catdog.tracking.store import configure_mlflow
from catdog.vocabulary import METRICS
from catdog.workspace.execution import ExecutionInfo
from catdog.workspace.lock import Owner

__all__ = [
    "Execution",
    "epoch_logger",
    "finish_execution",
    "log_stage_result",
    "mark_killed_runs",
    "open_execution",
    "read_model_results",
    "stage_run",
]

log = logging.getLogger("catdog")

EXECUTION_TAG = "catdog.execution"
OWNER_TAG = "catdog.owner"  # pid:start time of the process the run belongs to
HOST_TAG = "catdog.host"
WORKSPACE_TAG = "catdog.workspace"


def read_model_results(root: Path) -> dict[str, dict[str, float]]:
    """Each model's test metrics from ``reports/metrics.json`` (written by evaluate)."""
    document = json.loads((root / METRICS).read_text())
    return {name: document[name] for name in MODELS if name in document}


@dataclass(frozen=True)
class Execution:
    """One execution of the pipeline: the MLflow parent run that groups its stages."""

    run_id: str
    key: str
    info: ExecutionInfo

    @property
    def trigger(self) -> str:
        return self.info.trigger

    @property
    def label(self) -> str:
        return self.info.label

    def owner_tags(self, workspace: Path) -> dict[str, str]:
        """Tags that tie a run to the process it belongs to (copied onto each child run)."""
        owner = self.info.owner
        return {
            OWNER_TAG: f"{owner.pid}:{owner.created:.3f}",
            HOST_TAG: socket.gethostname(),
            WORKSPACE_TAG: str(workspace),
        }


def _owner_of(tags: Mapping[str, str]) -> Owner | None:
    pid, _, created = tags.get(OWNER_TAG, "").partition(":")
    try:
        return Owner(int(pid), float(created), "")
    except ValueError:
        return None


def mark_killed_runs(client: MlflowClient, experiment_id: str, workspace: Path) -> list[str]:
    """Mark KILLED the runs of this workspace still RUNNING whose process is gone.

    A run killed mid-stage (SIGKILL, a lost machine) cannot tell MLflow; the next run started in
    the same workspace does. Returns the ids of the runs marked.
    """
    quoted = str(workspace).replace("'", "\\'")
    stale = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{WORKSPACE_TAG}` = '{quoted}'",
        max_results=1000,
    )
    marked = []
    for run in stale:
        owner = _owner_of(run.data.tags)
        if run.data.tags.get(HOST_TAG) != socket.gethostname() or owner is None or owner.alive():
            continue
        client.set_tag(run.info.run_id, "catdog.error", "its process ended before it finished")
        client.set_terminated(run.info.run_id, status="KILLED")
        marked.append(run.info.run_id)
    if marked:
        log.warning("marked %d run(s) of an interrupted execution as KILLED", len(marked))
    return marked


def open_execution(
    home: Path,
    root: Path,
    experiment: str,
    info: ExecutionInfo,
    *,
    key: str = "",
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Execution:
    """Find or create the parent run of this pipeline execution.

    Under ``dvc repro`` every stage is a separate process; they share one parent run found by
    the DVC process they descend from (the execution's owner), or by ``key`` when the caller
    gives one. A new parent run is named by the execution's label and logs ``params``, the
    execution's params; runs of this workspace left RUNNING by a killed execution are marked
    KILLED first.
    """
    experiment_id = configure_mlflow(home, experiment)
    client = MlflowClient()
    owner = info.owner
    key = key or f"{info.trigger}:{owner.pid}:{owner.created:.3f}"
    existing = client.search_runs(
        [experiment_id], filter_string=f"tags.`{EXECUTION_TAG}` = '{key}'", max_results=1
    )
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return Execution(run_id, key, info)
    mark_killed_runs(client, experiment_id, root)
    execution = Execution("", key, info)
    run = client.create_run(
        experiment_id,
        run_name=info.label,
        tags={
            EXECUTION_TAG: key,
            "catdog.trigger": info.trigger,
            "catdog.kind": "pipeline",
            "git.commit": info.commit,
            "git.dirty": str(info.dirty).lower(),
            "dvc.exp_name": info.exp_name,
            "prefect.deployment": info.deployment,
            **execution.owner_tags(root),
            **(tags or {}),
        },
    )
    flat_params = [Param(k, str(v)) for k, v in flat(params or {}).items()]
    for start in range(0, len(flat_params), 100):  # MLflow takes 100 params a request
        client.log_batch(run.info.run_id, params=flat_params[start : start + 100])
    return Execution(run.info.run_id, key, info)


def finish_execution(execution: Execution, status: str = "FINISHED") -> None:
    """Mark the parent run finished (a later stage of the same execution reopens it)."""
    MlflowClient().set_terminated(execution.run_id, status=status)


@contextlib.contextmanager
def _store_errors_unlogged() -> Iterator[None]:
    """MLflow logs a failed write to its SQLite store, traceback and all, before raising it; on
    a full or read-only disk the stage's own error says more, in one line."""
    logger = logging.getLogger("mlflow.store.db.utils")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


@contextlib.contextmanager
def stage_run(
    execution: Execution, stage: str, root: Path, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A child run named after the stage and its execution; failures mark it and the parent
    FAILED (KILLED for Ctrl-C)."""
    info = execution.info
    all_tags = {
        "catdog.stage": stage,
        "catdog.trigger": info.trigger,
        "git.commit": info.commit,
        "git.dirty": str(info.dirty).lower(),
        "dvc.stage": os.environ.get("DVC_STAGE", ""),
        "dvc.exp_name": info.exp_name,
        "prefect.deployment": info.deployment,
        "mlflow.source.name": f"catdog stage {stage}",  # what MLflow's UI shows as the source
        **execution.owner_tags(root),
        **(tags or {}),
    }
    name = f"{stage} · {info.label}"
    with mlflow.start_run(
        run_name=name,
        parent_run_id=execution.run_id,
        tags=all_tags,
        nested=True,
    ) as run:
        machine.watch(run.info.run_id)  # CPU, memory (and GPU) of the machine that ran the stage
        try:
            yield run
        except BaseException as error:
            # Bookkeeping only: it must not replace the stage's own error, which is what the
            # user needs to see, e.g. when the tracking server is gone and these calls fail too.
            from catdog.servers.health import tracking_server_gone

            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            with contextlib.suppress(Exception), _store_errors_unlogged():
                if not tracking_server_gone(mlflow.get_tracking_uri()):
                    mlflow.set_tag("catdog.error", f"{stage} failed: {error}"[:5000])
                    MlflowClient().set_terminated(execution.run_id, status=status)
                    # its last samples; with the server gone, flushing would only retry
                    machine.stop_watching(run.info.run_id)
            with contextlib.suppress(Exception), _store_errors_unlogged():
                mlflow.end_run(status)  # here, so leaving the block does not retry it
            raise
        machine.stop_watching(run.info.run_id)


def epoch_logger(run_id: str) -> Any:
    """An ``on_epoch_end(epoch, logs)`` callback logging Keras metrics to run ``run_id``.

    It names the run explicitly, so it works from whichever thread Keras calls it on.
    """
    client = MlflowClient()

    def log(epoch: int, logs: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in logs.items()])

    return log


def log_stage_result(result: StageResult, params: Mapping[str, Any]) -> None:
    """Log a stage's params, final metrics, tags, artifacts and model to the active run.

    A model stage's model is registered (``catdog-<model>``) and its version tagged with the
    run's lineage, so call :func:`record_lineage` first.
    """
    mlflow.log_params({k: str(v) for k, v in flat(params).items()})
    if result.metrics:
        finite = {k: v for k, v in result.metrics.items() if np.isfinite(v)}
        mlflow.log_metrics(finite)
    tags = dict(result.tags)
    if result.warnings:
        tags["catdog.warning"] = " | ".join(result.warnings)[:5000]
    if tags:
        mlflow.set_tags(tags)
    for artifact in result.artifacts:
        if artifact.is_file():
            folder = "plots" if artifact.suffix == ".png" else "reports"
            mlflow.log_artifact(str(artifact), artifact_path=folder)
    if result.model is not None:
        from catdog.tracking.models import log_keras_model  # Keras: only model stages log a model

        registered = REGISTERED_NAMES.get(result.stage)
        epochs = len(next(iter(result.history.values()))) if result.history else 0
        # after the last epoch: epoch values must not pose as the model's result
        info = log_keras_model(
            result.model, name=result.stage, registered_model_name=registered, first_free=epochs
        )
        if registered:
            run_tags = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
            tag_version(registered, str(info.registered_model_version), run_tags)
