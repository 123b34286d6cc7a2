"""MLflow's model registry: each model stage registers its model, evaluate records its worth.

- ``classifier``, ``finetune`` and ``scratch`` register ``catdog-classifier``,
  ``catdog-finetuned`` and ``catdog-scratch`` (Keras flavor); each version carries the lineage
  tags of the run that made it and ``dvc.model``, DVC's hash of the ``.keras`` file.
- ``evaluate`` logs each model's test metrics to the logged model itself (MLflow 3's
  ``model_id``), linked to the test split as a dataset, and writes them into the version's
  description. The champion (:mod:`tracking.champion`) is chosen from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from catdog import vocabulary as vocab
from catdog.stage_table import REGISTERED_NAMES
from catdog.tracking.lineage import LINEAGE_TAG_KEYS, MODEL_TAG, dvc_hash

__all__ = [
    "REGISTERED_NAMES",
    "TEST_PREFIX",
    "describe_version",
    "log_test_metrics",
    "logged_model_id",
    "tag_version",
    "workspace_version",
]

TEST_PREFIX = "test_"  # a logged model's metrics: test_accuracy, test_roc_auc...


def tag_version(name: str, version: str, tags: Mapping[str, str]) -> None:
    """Copy the lineage tags among ``tags`` onto a registered model version."""
    client = MlflowClient()
    for key in LINEAGE_TAG_KEYS:
        if tags.get(key):
            client.set_model_version_tag(name, version, key, tags[key])


def _version_of(name: str, model_hash: str) -> Any | None:
    """The newest version of ``name`` whose ``dvc.model`` tag is ``model_hash``."""
    found = MlflowClient().search_model_versions(
        f"name = '{name}' and tags.`{MODEL_TAG}` = '{model_hash}'",
        order_by=["version_number DESC"],
        max_results=1,
    )
    return found[0] if found else None


def _register_from_workspace(stage: str, root: Path, model_hash: str) -> Any:
    """Register the workspace's model when no version of it exists (e.g. trained elsewhere)."""
    from catdog.models import load_model  # Keras: only evaluate's process gets here
    from catdog.tracking.models import log_keras_model

    info = log_keras_model(
        load_model(root / vocab.model_path(stage)),
        name=stage,
        registered_model_name=REGISTERED_NAMES[stage],
        first_free=1,  # evaluate's own metrics are at step 0, not this model's
    )
    version = str(info.registered_model_version)
    run_tags = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
    tag_version(REGISTERED_NAMES[stage], version, {**run_tags, MODEL_TAG: model_hash})
    return MlflowClient().get_model_version(REGISTERED_NAMES[stage], version)


def workspace_version(stage: str, root: Path) -> Any:
    """The registered version of the workspace's model of ``stage`` (registered if missing)."""
    model_hash = dvc_hash(root / vocab.model_path(stage), root)
    name = REGISTERED_NAMES[stage]
    return _version_of(name, model_hash) or _register_from_workspace(stage, root, model_hash)


def logged_model_id(version: Any) -> str:
    """The id of the logged model a registered version was made from (``m-...``)."""
    # MLflow 3's registry returns model_id empty through a tracking server; source names it
    return str(version.model_id or version.source.removeprefix("models:/"))


def log_test_metrics(version: Any, metrics: Mapping[str, float], dataset: Any) -> None:
    """Log test metrics to the version's logged model, in the run that made it, linked to the
    test ``dataset`` (the model's page then shows them, and its run too)."""
    mlflow.log_metrics(
        {f"{TEST_PREFIX}{key}": float(value) for key, value in metrics.items()},
        run_id=version.run_id,
        model_id=logged_model_id(version),
        dataset=dataset,
    )


def describe_version(version: Any, metrics: Mapping[str, float], images: int) -> None:
    """Write what a version is worth into its description, for the registry's pages."""
    tags = version.tags
    commit = tags.get("git.commit", "")[:7] or "unknown"
    raw = tags.get("dvc.data_raw", "")[:8] or "unknown"
    nan = float("nan")
    low, high = metrics.get("accuracy_ci_low", nan), metrics.get("accuracy_ci_high", nan)
    interval = f" [95% interval {low:.3f}, {high:.3f}]" if low == low and high == high else ""
    description = (
        f"Test accuracy {metrics['accuracy']:.3f}{interval} "
        f"(ROC AUC {metrics.get('roc_auc', nan):.3f}, "
        f"log loss {metrics.get('log_loss', nan):.3f}) on {images} test images. "
        f"Trained on data/raw {raw} (DVC hash), commit {commit}, VGG16 weights "
        f"{tags.get('weights', 'n/a')}; run {version.run_id}."
    )
    MlflowClient().update_model_version(version.name, version.version, description=description)
