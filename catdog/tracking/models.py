"""Models in MLflow: logging a Keras model with its environment, and loading a model reference
(a ``.keras`` file, ``runs:/`` or ``models:/``) as a model that takes images."""

from __future__ import annotations

import contextlib
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from catdog.errors import ModelReferenceError
from catdog.predict import images_model
from catdog.tracking import machine
from catdog.tracking.store import tracking_uri

__all__ = ["load_model_reference", "log_keras_model", "pip_requirements", "source_tags"]


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model (the serving environment needs the same)."""
    names = ("keras", "tensorflow-cpu", "numpy", "pandas", "pillow")
    pins = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def source_tags() -> dict[str, str]:
    """The active run's source (``catdog stage scratch``) for a model logged in it: MLflow would
    otherwise name the process's script, ``__main__.py`` under ``python -m catdog.cli``."""
    run = mlflow.active_run()
    source = run.data.tags.get("mlflow.source.name", "") if run else ""
    return {"mlflow.source.name": source} if source else {}


def log_keras_model(
    model: keras.Model,
    *,
    name: str,
    registered_model_name: str | None = None,
    first_free: int = 0,
) -> Any:
    """Log a Keras model (the one in memory) as an MLflow model of the active run.

    Args:
        model: The model, as the stage trained or loaded it.
        name: The logged model's name (``classifier``, ``finetune``, ``scratch``).
        registered_model_name: Register it as a version of this model, if given.
        first_free: The first step at which the run has no metric of its own: MLflow links
            the run's metrics at the model's step to the model (see :mod:`catdog.tracking.machine`).
    """
    from mlflow.models import infer_signature

    example = np.zeros((1, *model.input_shape[1:]), dtype="float32")
    signature = infer_signature(example, np.zeros((1, 1), dtype="float32"))
    return mlflow.keras.log_model(
        model,
        name=name,
        signature=signature,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_model_name,
        step=machine.model_step(mlflow.active_run().info.run_id, first_free),
        tags=source_tags(),
    )


def _load_mlflow_model(reference: str) -> keras.Model:
    """The Keras model behind a ``runs:/`` or ``models:/`` URI (the champion's too)."""
    from mlflow.exceptions import MlflowException

    try:
        flavors = mlflow.models.get_model_info(reference).flavors
        if "keras" in flavors:
            return mlflow.keras.load_model(reference)
        served = mlflow.pyfunc.load_model(reference).unwrap_python_model()
    except (MlflowException, OSError) as error:
        reason = (getattr(error, "message", "") or str(error)).splitlines()[0]
        raise ModelReferenceError(
            f"--model {reference}: {reason}; see the registered models in MLflow's UI "
            "(catdog ui), or give a .keras file"
        ) from None
    model = getattr(served, "model", None)  # the served champion (catdog/tracking/served_model.py)
    if not isinstance(model, keras.Model):
        raise ModelReferenceError(f"--model {reference}: not a catdog model (flavors: {flavors})")
    return model


def load_model_reference(reference: str, workspace: Path, tracking_home: Path) -> keras.Model:
    """A ``.keras`` path, or an MLflow ``runs:/`` / ``models:/`` URI, as a model taking images.

    Raises:
        ModelReferenceError: No such file, run or registered model, or not a catdog model.
    """
    if reference.startswith(("runs:/", "models:/")):
        mlflow.set_tracking_uri(tracking_uri(tracking_home))
        return images_model(_load_mlflow_model(reference), workspace)
    path = Path(reference)
    path = path if path.is_absolute() else workspace / path
    if not path.is_file():
        raise ModelReferenceError(
            f"--model {reference}: no such file; run the pipeline (`dvc repro`) or give a "
            ".keras file or an MLflow runs:/ or models:/ URI"
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as error:
        reason = str(error).split(". ")[0].splitlines()[0]
        raise ModelReferenceError(
            f"--model {reference}: not a Keras model file ({reason}); give a .keras file the "
            "pipeline wrote (models/*.keras) or an MLflow runs:/ or models:/ URI"
        ) from None
    return images_model(model, workspace)
