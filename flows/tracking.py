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
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from catdog import pipeline
from catdog.io import write_json
from catdog.paths import (
    AUGMENTED_DIR,
    CONV_BASE_WEIGHTS,
    FEATURES_DIR,
    FEATURES_META,
    MANIFEST,
    METRICS,
    MODELS,
    RAW_DIR,
    model_path,
)
from flows.registry import REGISTERED_NAMES, tag_version
from flows.workspace import state_dir
from tasks.common import StageResult, flat

__all__ = [
    "Execution",
    "configure_mlflow",
    "dvc_hash",
    "epoch_logger",
    "finish_execution",
    "git_commit",
    "log_keras_model",
    "log_stage_result",
    "open_execution",
    "pip_requirements",
    "read_model_results",
    "record_lineage",
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


def read_model_results(root: Path) -> dict[str, dict[str, float]]:
    """Each model's test metrics from ``reports/metrics.json`` (written by evaluate)."""
    document = json.loads((root / METRICS).read_text())
    return {name: document[name] for name in MODELS if name in document}


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


# The data a stage's lineage names, as MLflow tags holding DVC's hash of each.
LINEAGE_PATHS: dict[str, str] = {
    RAW_DIR: "dvc.data_raw",
    MANIFEST: "dvc.manifest",
    AUGMENTED_DIR: "dvc.augmented",
    FEATURES_DIR: "dvc.features",
    CONV_BASE_WEIGHTS: "dvc.conv_base",
}


def lineage_tags(stage: str, root: Path) -> dict[str, str]:
    """DVC hashes of what the stage read and made: ``dvc.data_raw`` (every stage), the manifest,
    augmented views, features and conv base it depends on, and ``dvc.model`` for a model stage.

    The hashes are DVC's own (md5, ``.dir`` for folders), so ``dvc.lock`` and the DVC cache can be
    searched for them.
    """
    s = pipeline.stage(stage)
    wanted = {RAW_DIR}
    for dep in (*s.deps, *s.outs):
        for path in LINEAGE_PATHS:
            if dep == path or dep.startswith(f"{path}/"):
                wanted.add(path)
    cache = state_dir(root)
    tags = {LINEAGE_PATHS[path]: dvc_hash(root / path, cache) for path in sorted(wanted)}
    if stage in MODELS:
        tags["dvc.model"] = dvc_hash(root / model_path(stage))
    return tags


def record_lineage(stage: str, root: Path) -> None:
    """Tag the active run with its data's DVC hashes and weights; log its dataset input.

    Called once the stage's task has finished, so ingest's ``data/raw`` and each model stage's
    model are there to hash.
    """
    tags = lineage_tags(stage, root)
    weights = weights_used(root)
    if weights:
        tags["weights"] = weights
    mlflow.set_tags(tags)
    log_dataset_input(stage, root)


def log_dataset_input(stage: str, root: Path) -> None:
    """Log the split manifest as the run's dataset input (``mlflow.log_input``), when it reads it.

    The dataset's digest is the manifest's DVC hash; its context says which split the stage used.
    """
    s = pipeline.stage(stage)
    manifest_path = root / MANIFEST
    if MANIFEST not in s.deps or not manifest_path.is_file():
        return
    import pandas as pd

    manifest = pd.read_csv(manifest_path)
    context = "evaluation" if stage == "evaluate" else "training"
    used = manifest[manifest["split"] == "test"] if stage == "evaluate" else manifest
    with warnings.catch_warnings():  # MLflow's hints about local sources and integer columns
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            used.reset_index(drop=True),
            source=str(manifest_path),
            targets="label",
            name="catdog-manifest" if stage != "evaluate" else "catdog-test-split",
            digest=dvc_hash(manifest_path)[:36],
        )
    mlflow.log_input(dataset, context=context)


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


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model (the serving environment needs the same)."""
    names = ("keras", "tensorflow-cpu", "numpy", "pandas", "pillow")
    pins = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def log_keras_model(path: Path, *, name: str, registered_model_name: str | None = None) -> Any:
    """Log a ``.keras`` file as an MLflow Keras model of the active run (and register it)."""
    import keras
    from mlflow.models import infer_signature

    model = keras.saving.load_model(path, safe_mode=True)
    example = np.zeros((1, *model.input_shape[1:]), dtype="float32")
    signature = infer_signature(example, np.zeros((1, 1), dtype="float32"))
    return mlflow.keras.log_model(
        model,
        name=name,
        signature=signature,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_model_name,
    )


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
    if result.model_path is not None:
        registered = REGISTERED_NAMES.get(result.stage)
        info = log_keras_model(result.model_path, name="model", registered_model_name=registered)
        if registered:
            run_tags = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
            tag_version(registered, str(info.registered_model_version), run_tags)
