"""MLflow model registry: each model stage registers its model; evaluate crowns a champion.

- ``classifier``, ``finetune`` and ``scratch`` register ``catdog-classifier``,
  ``catdog-finetuned`` and ``catdog-scratch`` (Keras flavor); each version carries the lineage
  tags of the run that made it and ``dvc.model``, DVC's hash of the ``.keras`` file.
- ``evaluate`` moves the alias ``champion`` to the version of the model with the best test
  accuracy (ROC AUC breaks ties) and removes it from the other two; it also registers that model,
  as one taking raw image bytes (:mod:`tracking.served_model`), as a version of ``catdog`` with the
  alias ``champion``: ``models:/catdog@champion`` is what ``catdog predict`` and
  ``mlflow models serve`` take.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from catdog import vocabulary as vocab
from tracking.lineage import LINEAGE_TAG_KEYS, dvc_hash

__all__ = [
    "ALIAS",
    "CHAMPION_MODEL",
    "REGISTERED_NAMES",
    "choose_champion",
    "promote_champion",
    "tag_version",
]

REGISTERED_NAMES: dict[str, str] = {
    "classifier": "catdog-classifier",
    "finetune": "catdog-finetuned",
    "scratch": "catdog-scratch",
}
CHAMPION_MODEL = "catdog"
ALIAS = "champion"

log = logging.getLogger("catdog")


def tag_version(name: str, version: str, tags: Mapping[str, str]) -> None:
    """Copy the lineage tags among ``tags`` onto a registered model version."""
    client = MlflowClient()
    for key in LINEAGE_TAG_KEYS:
        if tags.get(key):
            client.set_model_version_tag(name, version, key, tags[key])


def choose_champion(results: Mapping[str, Mapping[str, float]]) -> str:
    """The model with the best test accuracy; ROC AUC, then the stage order, break ties."""
    order = {name: i for i, name in enumerate(vocab.MODELS)}
    return max(
        results,
        key=lambda m: (results[m]["accuracy"], results[m].get("roc_auc", 0.0), -order.get(m, 0)),
    )


def _version_of(name: str, model_hash: str) -> Any | None:
    """The newest version of ``name`` whose ``dvc.model`` tag is ``model_hash``."""
    client = MlflowClient()
    found = client.search_model_versions(
        f"name = '{name}' and tags.`dvc.model` = '{model_hash}'",
        order_by=["version_number DESC"],
        max_results=1,
    )
    return found[0] if found else None


def _register_from_workspace(stage: str, root: Path, model_hash: str) -> Any:
    """Register the workspace's model when no version of it exists (e.g. trained elsewhere)."""
    from tracking.models import log_keras_model  # Keras: only evaluate's process gets here

    info = log_keras_model(
        root / vocab.model_path(stage),
        name=f"model_{stage}",
        registered_model_name=REGISTERED_NAMES[stage],
    )
    version = str(info.registered_model_version)
    run_tags = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
    tag_version(REGISTERED_NAMES[stage], version, {**run_tags, "dvc.model": model_hash})
    return MlflowClient().get_model_version(REGISTERED_NAMES[stage], version)


def _move_alias(name: str, version: str, others: list[str]) -> None:
    client = MlflowClient()
    client.set_registered_model_alias(name, ALIAS, version)
    for other in others:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # not registered, or no alias
            client.delete_registered_model_alias(other, ALIAS)


def _serving_version(source: Any, stage: str, root: Path, threshold: float) -> str:
    """The ``catdog`` version serving ``source`` (registered now if it is not there yet)."""
    client = MlflowClient()
    existing = client.search_model_versions(
        f"name = '{CHAMPION_MODEL}' and tags.`catdog.source` = '{source.name}/{source.version}'",
        order_by=["version_number DESC"],
        max_results=1,
    )
    if existing:
        return str(existing[0].version)
    # Keras and TensorFlow: only evaluate's process registers a champion
    import keras
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    from catdog.models import load_model
    from catdog.predict import images_model
    from tracking.models import pip_requirements

    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, "image")]),
        outputs=Schema(
            [
                ColSpec(DataType.double, "prob_dog"),
                ColSpec(DataType.string, "label"),
                ColSpec(DataType.string, "error"),
            ]
        ),
    )
    with tempfile.TemporaryDirectory(prefix="catdog-champion-") as scratch:
        model = images_model(load_model(root / vocab.model_path(stage)), root)
        keras_path = Path(scratch) / "model.keras"
        keras.saving.save_model(model, keras_path)
        info = mlflow.pyfunc.log_model(
            name="champion",
            python_model=str(Path(__file__).with_name("served_model.py")),
            artifacts={"keras_model": str(keras_path)},
            signature=signature,
            model_config={"threshold": threshold},
            pip_requirements=pip_requirements(),
            registered_model_name=CHAMPION_MODEL,
        )
    version = str(info.registered_model_version)
    tag_version(CHAMPION_MODEL, version, dict(source.tags))
    client.set_model_version_tag(
        CHAMPION_MODEL, version, "catdog.source", f"{source.name}/{source.version}"
    )
    client.set_model_version_tag(CHAMPION_MODEL, version, "catdog.source_run_id", source.run_id)
    client.set_model_version_tag(CHAMPION_MODEL, version, "catdog.stage", stage)
    return version


def promote_champion(
    root: Path, results: Mapping[str, Mapping[str, float]], threshold: float
) -> dict[str, str]:
    """Move ``champion`` to the best model's version; called inside evaluate's MLflow run.

    Returns:
        Tags for the evaluate run: the champion's stage, registered model and version.
    """
    stage = choose_champion(results)
    name = REGISTERED_NAMES[stage]
    model_hash = dvc_hash(root / vocab.model_path(stage))
    version = _version_of(name, model_hash) or _register_from_workspace(stage, root, model_hash)
    _move_alias(name, str(version.version), [n for n in REGISTERED_NAMES.values() if n != name])
    serving = _serving_version(version, stage, root, threshold)
    MlflowClient().set_registered_model_alias(CHAMPION_MODEL, ALIAS, serving)
    accuracy = results[stage]["accuracy"]
    log.info(
        "evaluate: champion is %s (test accuracy %.3f): %s version %s, %s version %s",
        stage,
        accuracy,
        name,
        version.version,
        CHAMPION_MODEL,
        serving,
    )
    return {
        "champion.stage": stage,
        "champion.model": f"{name}/{version.version}",
        "champion.serving": f"{CHAMPION_MODEL}/{serving}",
    }
