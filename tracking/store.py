"""Where MLflow records the pipeline: the tracking URI and the experiment.

The default store is SQLite at ``<home>/mlflow.db`` with artifacts in ``<home>/mlartifacts``, where
``home`` is the project's root even when DVC runs a queued experiment in a temporary copy (DVC
passes the original root as ``DVC_ROOT``). ``MLFLOW_TRACKING_URI`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from workspace.paths import MLFLOW_ARTIFACTS, local_tracking_uri

__all__ = ["configure_mlflow", "tracking_uri"]


def tracking_uri(home: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(home)


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
            location = (home / MLFLOW_ARTIFACTS).resolve().as_uri()
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
