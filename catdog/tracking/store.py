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

from catdog.workspace.paths import MLFLOW_ARTIFACTS, MLFLOW_DB, local_tracking_uri

__all__ = [
    "LOCAL_UI",
    "MODEL_TRAINING_VIEW",
    "configure_mlflow",
    "run_url",
    "serve_artifacts_locally",
    "serve_artifacts_through_server",
    "tracking_uri",
]

#: Where `catdog ui` serves MLflow's UI for the local store by default.
LOCAL_UI = "http://127.0.0.1:5000"
#: MLflow's UI opens in its GenAI view unless a link asks for this (it then keeps to it).
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def tracking_uri(home: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(home)


#: Experiment tags for MLflow's UI: open it on its runs (not the GenAI overview), and say what
#: it holds and how to compare.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "catdog: cat-vs-dog classifiers after chapter 8 of Deep Learning with Python. Each "
        "pipeline execution (`dvc repro`, `dvc exp run`, `catdog run`) is a parent run named by "
        "its trigger or DVC experiment, time and commit, with a child run per stage it ran. To "
        "compare two executions, filter `tags.catdog.stage = 'evaluate'`, tick two runs and "
        "press Compare: *Show diff only* lists the params that differ (every child run logs the "
        "params of its upstream stages too) beside each model's test metrics. The Models tab "
        "shows each logged model's test metrics; the registry's `catdog@champion` is the model "
        "served."
    ),
}


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
        found = client.get_experiment(experiment_id)
    for key, value in EXPERIMENT_TAGS.items():
        if found.tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)
    if uri == local_tracking_uri(home) and found.artifact_location.startswith(_SERVED):
        serve_artifacts_locally(home)  # after `catdog serve`: new local runs write files again
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# A run's artifacts go under its experiment's artifact location, set when the experiment was
# made and never changed by MLflow's API. The project's two ways of storing them name the same
# folder: file://<home>/mlartifacts[/<x>] for a local client, mlflow-artifacts:/[<x>] through
# `catdog serve`, which proxies that prefix from <home>/mlartifacts. Runs keep the URIs they got.
_SERVED = "mlflow-artifacts:/"


def _relocate(home: Path, served: bool) -> None:
    """Point the project's experiments at the server's artifact proxy, or back at the folder."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if not (home / MLFLOW_DB).is_file():
        return
    folder = (home / MLFLOW_ARTIFACTS).resolve().as_uri()
    store = SqlAlchemyStore(local_tracking_uri(home), folder)
    with store.ManagedSessionMaker() as session:
        for experiment in session.query(SqlExperiment).all():
            location = experiment.artifact_location or ""
            if served and (location == folder or location.startswith(f"{folder}/")):
                experiment.artifact_location = _SERVED + location[len(folder) :].lstrip("/")
            elif not served and location.startswith(_SERVED):
                suffix = location[len(_SERVED) :]
                experiment.artifact_location = f"{folder}/{suffix}" if suffix else folder


def serve_artifacts_through_server(home: Path) -> None:
    """New runs logged through ``catdog serve`` get ``mlflow-artifacts:`` URIs (for teammates)."""
    _relocate(home, served=True)


def serve_artifacts_locally(home: Path) -> None:
    """New runs logged to the local store write their artifacts into ``<home>/mlartifacts``."""
    _relocate(home, served=False)


def run_url(experiment_id: str, run_id: str) -> str:
    """The run's page in MLflow's UI: on the tracking server, or where `catdog ui` serves it."""
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"
