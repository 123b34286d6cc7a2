"""``catdog predict``: resolve a model reference and score image files with it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras

from catdog import paths

__all__ = ["DEFAULT_MODEL", "images_model", "load_model_reference", "run_predict"]

DEFAULT_MODEL = paths.model_path("finetune")


def images_model(model: keras.Model, workspace: Path) -> keras.Model:
    """The model itself if it takes images; the dense head composed with its conv base if not."""
    if model.input_shape[-1] == 3:
        return model
    from catdog.features import feature_extractor
    from catdog.models import make_conv_base

    weights, meta = workspace / paths.CONV_BASE_WEIGHTS, workspace / paths.FEATURES_META
    if not (weights.is_file() and meta.is_file()):
        raise FileNotFoundError(
            f"the model takes VGG16 features, and {weights} or {meta} (made by the features "
            "stage) is missing: run `dvc repro features` or give --model finetune/scratch"
        )
    size = int(json.loads(meta.read_text())["image_size"])
    extractor = feature_extractor(make_conv_base(size, weights))
    image = keras.Input(shape=extractor.input_shape[1:], name="image")
    return keras.Model(image, model(extractor(image)), name="classifier_on_images")


def load_model_reference(reference: str, workspace: Path, tracking_home: Path) -> keras.Model:
    """A ``.keras`` path, or an MLflow ``runs:/`` / ``models:/`` URI, as a model taking images."""
    if reference.startswith(("runs:/", "models:/")):
        import mlflow

        from flows.tracking import tracking_uri

        mlflow.set_tracking_uri(tracking_uri(tracking_home))
        flavors = mlflow.models.get_model_info(reference).flavors
        if "keras" in flavors:
            model = mlflow.keras.load_model(reference)
        else:  # the served champion (flows/champion_model.py): its Keras model takes images
            served = mlflow.pyfunc.load_model(reference).unwrap_python_model()
            if not isinstance(getattr(served, "model", None), keras.Model):
                raise ValueError(f"--model {reference}: not a catdog model (flavors: {flavors})")
            model = served.model
    else:
        path = Path(reference)
        path = path if path.is_absolute() else workspace / path
        if not path.is_file():
            raise FileNotFoundError(
                f"--model {reference}: no such file; run the pipeline (`dvc repro`) or give a "
                ".keras file or an MLflow runs:/ or models:/ URI"
            )
        model = keras.saving.load_model(path, safe_mode=True)
    return images_model(model, workspace)


def run_predict(
    inputs: list[Path],
    reference: str,
    out: Path | None,
    workspace: Path,
    tracking_home: Path,
    threshold: float = 0.5,
) -> int:
    """Write path, prob_dog, label as CSV (stdout or ``out``); skipped files go to stderr."""
    from catdog.io import write_text
    from catdog.predict import collect_images, predict_images

    files, problems = collect_images(inputs)
    model = load_model_reference(reference, workspace, tracking_home)
    table, skipped = predict_images(model, files, threshold=threshold)
    for path, reason in [*problems, *skipped]:
        sys.stderr.write(f"catdog predict: skipped {path}: {reason}\n")
    text = table.to_csv(index=False, lineterminator="\n")
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        sys.stderr.write(f"wrote {len(table)} predictions to {out}\n")
    return 0 if len(table) else 1
