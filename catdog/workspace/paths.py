"""Where things live: the workspace a stage runs in, and the project home that outlives it.

The home holds what is not a pipeline output and must outlive a queued experiment's temporary
copy: the MLflow store (``mlflow.db``, ``mlartifacts/``) and ``.catdog/`` (the Prefect server's
home, logs, the record of the run in progress).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "MLFLOW_ARTIFACTS",
    "MLFLOW_DB",
    "STATE_DIR",
    "find_workspace",
    "local_tracking_uri",
    "state_dir",
    "tracking_home",
    "use_workspace_code",
]

STATE_DIR = ".catdog"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


def find_workspace(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``dvc.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def use_workspace_code(workspace: Path) -> None:
    """Make the workspace's own ``tasks/`` and ``flows/`` importable (they are not installed:
    only ``catdog`` is, so no generic top-level name lands in anyone's site-packages)."""
    root = str(workspace)
    if root not in sys.path:
        sys.path.insert(0, root)


def tracking_home(workspace: Path) -> Path:
    """The project's root for MLflow and shared services.

    Queued ``dvc exp run`` executions work in temporary copies of the repository; DVC tells
    them the original root in ``DVC_ROOT``, so every execution logs to the same store.
    """
    dvc_root = os.environ.get("DVC_ROOT")
    return Path(dvc_root).resolve() if dvc_root else workspace


def state_dir(home: Path) -> Path:
    """Local state that is not a pipeline output (``.catdog/``), created if missing."""
    path = home / STATE_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_tracking_uri(home: Path) -> str:
    """The project's own MLflow store: SQLite in ``<home>/mlflow.db``."""
    return f"sqlite:///{home / MLFLOW_DB}"
