"""MLflow bookkeeping: one parent run per pipeline execution, one child run per stage that ran.

The default store is SQLite at ``<home>/mlflow.db`` with artifacts in ``<home>/mlartifacts``, where
``home`` is the project's root even when DVC runs a queued experiment in a temporary copy
(DVC passes the original root as ``DVC_ROOT``). ``MLFLOW_TRACKING_URI`` overrides it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from catdog.io import write_json
from catdog.paths import FEATURES_META, RAW_DIR
from flows.workspace import state_dir
from tasks.common import StageResult, flat

__all__ = [
    "Execution",
    "configure_mlflow",
    "dvc_hash",
    "epoch_logger",
    "finish_execution",
    "git_commit",
    "log_stage_result",
    "open_execution",
    "stage_run",
    "tracking_uri",
]

EXECUTION_TAG = "catdog.execution"


def tracking_uri(home: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"


def configure_mlflow(home: Path, experiment: str) -> str:
    """Point MLflow at the project's store and experiment; return the experiment id."""
    uri = tracking_uri(home)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = None
        if uri.startswith("sqlite:"):
            location = (home / "mlartifacts").resolve().as_uri()
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit(root: Path) -> tuple[str, bool]:
    """The workspace's git commit and whether the tree is dirty ('' if not a git repo)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "", False
    return commit, bool(status.strip())


def _stat_signature(path: Path) -> str:
    """A cheap fingerprint of a tree: every file's relative path, size and mtime."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(path.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()


def dvc_hash(path: Path, cache_dir: Path | None = None) -> str:
    """The hash DVC gives a file or folder (``<md5>`` or ``<md5>.dir``), '' if it is missing.

    With ``cache_dir``, a tree whose files' sizes and mtimes are unchanged is not hashed again
    (as DVC's own state database does), which keeps every stage's run cheap to tag.
    """
    if not path.exists():
        return ""
    cache = cache_dir / "dvc-hash-cache.json" if cache_dir is not None else None
    signature = _stat_signature(path) if cache is not None else ""
    if cache is not None and cache.is_file():
        known = json.loads(cache.read_text())
        if known.get(str(path.resolve()), {}).get("signature") == signature:
            return str(known[str(path.resolve())]["hash"])
    value = _dvc_hash(path)
    if cache is not None:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        known[str(path.resolve())] = {"signature": signature, "hash": value}
        write_json(cache, known)
    return value


def _dvc_hash(path: Path) -> str:
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory(prefix="catdog-dvc-hash-") as scratch:
        _, _, obj = build(HashFileDB(fs, scratch), str(path), fs, "md5", dry_run=True)
    return str(obj.hash_info.value)


def weights_used(root: Path) -> str:
    """The VGG16 weights the workspace's features were made with ('' before features ran)."""
    meta = root / FEATURES_META
    if not meta.is_file():
        return ""
    return str(json.loads(meta.read_text())["weights"]["label"])


def _ancestor_dvc_process() -> str:
    """Identify the ``dvc repro`` / ``dvc exp run`` process this stage runs under, if any."""
    try:
        import psutil

        process = psutil.Process().parent()
        while process is not None:
            cmdline = " ".join(process.cmdline())
            if (
                "dvc" in Path(process.cmdline()[0]).name
                or " -m dvc" in cmdline
                or (len(process.cmdline()) > 1 and Path(process.cmdline()[1]).name == "dvc")
            ):
                return f"dvc:{process.pid}:{process.create_time():.3f}"
            process = process.parent()
    except Exception:
        return ""
    return ""


@dataclass(frozen=True)
class Execution:
    """One execution of the pipeline: the MLflow parent run that groups its stages."""

    run_id: str
    key: str
    trigger: str


def open_execution(
    home: Path, root: Path, experiment: str, *, trigger: str, key: str = ""
) -> Execution:
    """Find or create the parent run of this pipeline execution.

    Under ``dvc repro`` every stage is a separate process; they share one parent run found by the
    DVC process they descend from (or by ``CATDOG_EXECUTION`` if the caller sets it).
    """
    experiment_id = configure_mlflow(home, experiment)
    key = key or os.environ.get("CATDOG_EXECUTION", "") or _ancestor_dvc_process()
    client = MlflowClient()
    if key:
        existing = client.search_runs(
            [experiment_id], filter_string=f"tags.`{EXECUTION_TAG}` = '{key}'", max_results=1
        )
        if existing:
            run_id = existing[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return Execution(run_id, key, trigger)
    commit, dirty = git_commit(root)
    name = f"{trigger} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            EXECUTION_TAG: key or f"{trigger}:{os.getpid()}:{time.time():.3f}",
            "catdog.trigger": trigger,
            "catdog.kind": "pipeline",
            "git.commit": commit,
            "git.dirty": str(dirty).lower(),
            "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        },
    )
    return Execution(run.info.run_id, key, trigger)


def finish_execution(execution: Execution, status: str = "FINISHED") -> None:
    """Mark the parent run finished (a later stage of the same execution reopens it)."""
    MlflowClient().set_terminated(execution.run_id, status=status)


@contextlib.contextmanager
def stage_run(
    execution: Execution, stage: str, root: Path, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A child run named after the stage; failures mark it and the parent FAILED."""
    commit, dirty = git_commit(root)
    all_tags = {
        "catdog.stage": stage,
        "catdog.trigger": execution.trigger,
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "dvc.stage": os.environ.get("DVC_STAGE", ""),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        **(tags or {}),
    }
    with mlflow.start_run(
        run_name=stage, parent_run_id=execution.run_id, tags=all_tags, nested=True
    ) as run:
        try:
            yield run
            # after the stage: ingest creates data/raw, the others leave it as it was
            mlflow.set_tag("dvc.data_raw", dvc_hash(root / RAW_DIR, state_dir(root)))
            weights = weights_used(root)
            if weights:
                mlflow.set_tag("weights", weights)
        except BaseException:
            # Bookkeeping only: it must not replace the stage's own error, which is what the
            # user needs to see, e.g. when the tracking server is gone and these calls fail too.
            from flows.health import tracking_server_gone

            with contextlib.suppress(Exception):
                if not tracking_server_gone(mlflow.get_tracking_uri()):
                    mlflow.set_tag("catdog.error", "stage failed; see the Prefect flow run log")
                    MlflowClient().set_terminated(execution.run_id, status="FAILED")
            with contextlib.suppress(Exception):  # here, so leaving the block does not retry it
                mlflow.end_run("FAILED")
            raise


def epoch_logger(run_id: str) -> Any:
    """An ``on_epoch_end(epoch, logs)`` callback logging Keras metrics to run ``run_id``.

    It names the run explicitly, so it works from whichever thread Keras calls it on.
    """
    client = MlflowClient()

    def log(epoch: int, logs: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in logs.items()])

    return log


def _pip_requirements() -> list[str]:
    names = ("keras", "tensorflow-cpu", "numpy")
    pins = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def log_stage_result(result: StageResult, params: Mapping[str, Any]) -> None:
    """Log a stage's params, final metrics, tags, artifacts and model to the active run."""
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
    if result.model_path is not None:
        import keras
        from mlflow.models import infer_signature

        model = keras.saving.load_model(result.model_path, safe_mode=True)
        example = np.zeros((1, *model.input_shape[1:]), dtype="float32")
        signature = infer_signature(example, np.zeros((1, 1), dtype="float32"))
        mlflow.keras.log_model(
            model,
            name="model",
            signature=signature,
            pip_requirements=_pip_requirements(),
        )
