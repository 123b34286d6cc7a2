"""Where things live: the workspace a stage runs in, and the project home that outlives it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_workspace", "state_dir", "tracking_home"]


def find_workspace(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``dvc.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def tracking_home(workspace: Path) -> Path:
    """The project's root for MLflow and shared services.

    Queued ``dvc exp run`` executions work in temporary copies of the repository; DVC tells
    them the original root in ``DVC_ROOT``, so every execution logs to the same store.
    """
    dvc_root = os.environ.get("DVC_ROOT")
    return Path(dvc_root).resolve() if dvc_root else workspace


def state_dir(home: Path) -> Path:
    """Local state that is not a pipeline output (Prefect server record, run stamps)."""
    path = home / ".catdog"
    path.mkdir(parents=True, exist_ok=True)
    return path
