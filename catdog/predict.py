"""Predict and explain: image files or folders in, probability of dog (and where the model
looked) out, through the training input path.

Files are checked the way the ingest checks them (full decode); unreadable ones are skipped with a
reason. Anything that is not already an RGB JPEG or PNG is converted to RGB PNG first, exactly as
the ingest stores it, so the model sees the pixels it would have seen in training.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from PIL import Image

from catdog import gradcam
from catdog import vocabulary as vocab
from catdog.errors import ModelReferenceError
from catdog.features import feature_extractor
from catdog.images import make_dataset
from catdog.ingest import check_image
from catdog.io import atomic_file
from catdog.vgg16 import make_conv_base
from catdog.vocabulary import IMAGE_SUFFIXES

__all__ = ["collect_images", "explain_images", "images_model", "predict_images"]


def collect_images(inputs: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively) into image files; report what is not one.

    Returns:
        The image files in a stable order, and ``(path, reason)`` for inputs that cannot be used.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                hidden = any(part.startswith(".") for part in path.relative_to(item).parts)
                if path.is_file() and not hidden and path.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(path)
        elif item.is_file():
            files.append(item)
        else:
            problems.append((item, "no such file or folder"))
    return files, problems


def _model_inputs(
    files: Sequence[Path], scratch: Path, max_pixels: int
) -> tuple[list[Path], list[str], list[tuple[Path, str]]]:
    """The readable files, the file the model reads for each (the file itself, or its RGB PNG
    conversion written into ``scratch``), and the skipped files with their reasons."""
    problems: list[tuple[Path, str]] = []
    readable: list[Path] = []
    model_inputs: list[str] = []
    for index, path in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as error:
            problems.append((path, f"cannot read: {error.strerror or error}"))
            continue
        decoded = check_image(data, max_pixels=max_pixels)
        if isinstance(decoded, str):
            problems.append((path, decoded))
            continue
        readable.append(path)
        if decoded.is_rgb_jpeg or (decoded.format == "PNG" and decoded.mode == "RGB"):
            model_inputs.append(str(path))
        else:  # stored as the ingest would store it: lossless RGB PNG
            converted = scratch / f"{index}.png"
            buffer = io.BytesIO()
            decoded.image.save(buffer, format="PNG")
            converted.write_bytes(buffer.getvalue())
            model_inputs.append(str(converted))
    return readable, model_inputs, problems


def predict_images(
    model: keras.Model,
    files: Sequence[Path],
    *,
    threshold: float = 0.5,
    batch_size: int = 32,
    max_pixels: int = 40_000_000,
) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """Probability of dog for each readable image.

    Args:
        model: A model taking raw RGB images (finetune, scratch, or a composed classifier).
        files: Image files.
        threshold: Probability at or above which the label is ``dog``.
        batch_size: Images per batch.
        max_pixels: Larger images are refused, as in the ingest.

    Returns:
        A frame with columns path, prob_dog, label (input order), and the skipped files with
        their reasons.
    """
    image_size = int(model.input_shape[1])
    with tempfile.TemporaryDirectory(prefix="catdog-predict-") as scratch:
        readable, model_inputs, problems = _model_inputs(files, Path(scratch), max_pixels)
        probabilities = np.zeros(0, dtype="float32")
        if model_inputs:
            dataset = make_dataset(model_inputs, image_size, batch_size)
            probabilities = np.asarray(model.predict(dataset, verbose=0)).reshape(-1)
    return _answers(readable, probabilities, threshold), problems


def _answers(files: Sequence[Path], probabilities: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [str(p) for p in files],
            "prob_dog": np.round(probabilities.astype("float64"), 6),
            "label": np.where(probabilities >= threshold, "dog", "cat"),
        }
    )


def explain_images(
    model: keras.Model,
    files: Sequence[Path],
    out: Path,
    *,
    threshold: float = 0.5,
    batch_size: int = 32,
    max_pixels: int = 40_000_000,
    longest_side: int = 640,
) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """Probability of dog and a Grad-CAM overlay for each readable image.

    Each photo's overlay is ``out/<name>.png`` (the name of the photo, numbered when two
    share it): the map of the predicted class over the photo as it is on disk, at most
    ``longest_side`` pixels long, each file written whole or not at all.

    Args:
        model: A model taking raw RGB images whose feature map is declared
            (:func:`catdog.gradcam.find_gradcam_layer`).
        files: Image files.
        out: Folder for the overlays; created if missing.
        threshold: Probability at or above which the label is ``dog``.
        batch_size: Images per forward and backward pass.
        max_pixels: Larger images are refused, as in the ingest.
        longest_side: The overlays' longest side at most, in pixels.

    Returns:
        A frame with columns path, prob_dog, label, heatmap (input order), and the skipped
        files with their reasons.
    """
    image_size = int(model.input_shape[1])
    with tempfile.TemporaryDirectory(prefix="catdog-explain-") as scratch:
        readable, model_inputs, problems = _model_inputs(files, Path(scratch), max_pixels)
        pixels = []
        if model_inputs:
            batches = make_dataset(model_inputs, image_size, batch_size).as_numpy_iterator()
            pixels = [np.asarray(batch) for batch in batches]
    images = np.concatenate(pixels) if pixels else np.zeros((0, image_size, image_size, 3))
    probabilities, maps = gradcam.heatmaps(model, images, batch_size=batch_size)
    out.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for path, heatmap in zip(readable, maps, strict=True):
        name = _free_name(path.stem, used)
        with Image.open(path) as photo:  # as decoded for the model: no EXIF rotation
            photo = photo.convert("RGB")
            photo.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
        target = out / f"{name}.png"
        with atomic_file(target) as tmp:
            Image.fromarray(gradcam.overlay(np.asarray(photo), heatmap)).save(tmp, format="PNG")
        written.append(str(target))
    table = _answers(readable, probabilities, threshold)
    table["heatmap"] = written
    return table, problems


def _free_name(stem: str, used: set[str]) -> str:
    name, number = stem, 1
    while name in used:
        number += 1
        name = f"{stem}-{number}"
    used.add(name)
    return name


def images_model(model: keras.Model, workspace: Path) -> keras.Model:
    """The model itself if it takes images; the dense head composed with its conv base if not."""
    if model.input_shape[-1] == 3:
        return model
    weights, meta = workspace / vocab.CONV_BASE_WEIGHTS, workspace / vocab.FEATURES_META
    if not (weights.is_file() and meta.is_file()):
        raise ModelReferenceError(
            f"the model takes VGG16 features, and {weights} or {meta} (made by the features "
            "stage) is missing: run `dvc repro features` or give --model finetune/scratch"
        )
    size = int(json.loads(meta.read_text())["image_size"])
    extractor = feature_extractor(make_conv_base(size, weights))
    image = keras.Input(shape=extractor.input_shape[1:], name="image")
    return keras.Model(image, model(extractor(image)), name="classifier_on_images")
