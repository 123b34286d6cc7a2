"""Pipeline parameters: loaded from ``params.yaml`` and validated once.

Each section of ``params.yaml`` is named after the stage that reads it (``data`` is shared by the
stages that need the image source or size). Unknown keys, wrong types and impossible values fail
with a :class:`ParamsError` that names the offending key, before any heavy work starts.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from catdog.errors import ParamsError

__all__ = [
    "Params",
    "ParamsError",
    "TrainParams",
    "flat_params",
    "given_values",
    "load_params",
    "missing_keys",
    "parse_params",
    "read_params_file",
    "unknown_key",
]


MIN_IMAGE_SIZE = 78


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SyntheticParams(_Section):
    """The embedded generator of cartoon cats and dogs."""

    per_class: int = Field(150, ge=2, description="pictures generated per class")
    size: int = Field(128, ge=32, le=1024, description="side of a generated picture, pixels")
    seed: int = Field(7, ge=0)


class DataParams(_Section):
    """Where the images come from and the size every model sees them at."""

    source: str = Field(
        "catdog/synthetic.py",
        min_length=1,
        description="the embedded generator, or a folder or .zip of photos (DVC hashes it)",
    )
    image_size: int = Field(
        96,
        le=1024,
        description="side every model sees the images at, pixels",
        json_schema_extra={"minimum": MIN_IMAGE_SIZE},  # the run form's bound; why: below
    )
    synthetic: SyntheticParams = SyntheticParams()

    @field_validator("source")
    @classmethod
    def _source_is_a_path(cls, value: str) -> str:
        if value == "synthetic":
            raise ValueError(
                "use 'catdog/synthetic.py' for the embedded generator: DVC declares the source "
                "as a dependency, so it must be a path it can hash"
            )
        return value

    @field_validator("image_size")
    @classmethod
    def _scratch_fits_image(cls, value: int) -> int:
        # The book's convnet has five valid 3x3 convolutions and four poolings: below 78 px the
        # last convolution would get an empty input (VGG16 alone would take 32).
        if value < MIN_IMAGE_SIZE:
            raise ValueError(
                f"must be at least {MIN_IMAGE_SIZE} (the from-scratch convnet's five 3x3 "
                f"convolutions and four poolings need it), got {value}"
            )
        return value


class IngestParams(_Section):
    """Decoding and checking the images, into data/raw."""

    min_per_class: int = Field(2, ge=1)
    max_pixels: int = Field(40_000_000, ge=1024, description="larger images are rejected as bombs")
    workers: int = Field(0, ge=0, description="decoding threads; 0 = one per core")


class SplitParams(_Section):
    """The train, validation and test split, near-duplicates kept on one side."""

    train: float = Field(0.6, gt=0, lt=1)
    validation: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    counts: tuple[int, int, int] | None = Field(
        None, description="images per class for train, validation, test; replaces the fractions"
    )
    near_duplicates: bool = True
    max_distance: int = Field(4, ge=0, le=64, description="dHash bits apart to count as copies")
    workers: int = Field(0, ge=0, description="hashing threads; 0 = one per core")
    seed: int = Field(42, ge=0)

    @field_validator("counts")
    @classmethod
    def _counts_not_negative(cls, value: tuple[int, int, int] | None) -> Any:
        if value is not None and min(value) < 0:
            raise ValueError(f"counts must not be negative, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"train + validation + test must sum to 1, got {total:g} "
                f"({self.train:g} + {self.validation:g} + {self.test:g})"
            )
        return self


class AugmentParams(_Section):
    """The augmented views of each training image (flips, rotations, zooms)."""

    views: int = Field(2, ge=0, le=100, description="augmented views per training image")
    flip: Literal["horizontal", "vertical", "horizontal_and_vertical", "none"] = "horizontal"
    rotation: float = Field(0.1, ge=0, le=1, description="fraction of a full turn, as Keras")
    zoom: float = Field(0.2, ge=0, lt=1)
    translation: float = Field(
        0.0, ge=0, lt=1, description="shift range, a fraction of height and width; 0: off"
    )
    seed: int = Field(42, ge=0)
    preview: int = Field(8, ge=1, le=64, description="training images shown in the preview grid")


class FeaturesParams(_Section):
    """VGG16's conv base and the features it extracts from every image."""

    weights: str = Field("auto", min_length=1)
    batch_size: int = Field(32, ge=1)
    dtype: Literal["float16", "float32"] = "float16"
    compute: Literal["float32", "mixed_bfloat16"] = Field(
        "float32", description="mixed_bfloat16: ~1.2x faster on CPUs with AVX-512 BF16"
    )
    seed: int = Field(42, ge=0, description="initialises untrained weights")
    shard_batches: int = Field(
        16,
        ge=1,
        description="batches per shard: the unit of work mapped over local threads or a Dask "
        "cluster; the features are the same whatever its value",
    )

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in {"auto", "imagenet", "none"} or value.endswith((".h5", ".keras")):
            return value
        raise ValueError(
            "must be 'auto', 'imagenet', 'none' or a path to a Keras weights file "
            f"ending in .h5 / .weights.h5, got {value!r}"
        )


#: VGG16's convolutions, by Keras' names (2, 2, 3, 3, 3 per block).
VggLayer = Literal[
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
]


class FiltersParams(_Section):
    """VGG16 from the inside: one test photo's activations, and what its filters respond to."""

    photo: int = Field(
        0, ge=0, description="the test photo whose activations are drawn (its test split row)"
    )
    layers: list[VggLayer] = Field(
        ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"],
        min_length=1,
        description="the conv base's layers drawn, in order",
    )
    channels: int = Field(8, ge=1, le=64, description="feature maps drawn per layer, the first")
    filters: int = Field(
        4, ge=0, le=16, description="filters per layer whose favourite input is drawn; 0: none"
    )
    pattern_size: int = Field(
        64, ge=48, le=512, description="side of those inputs, in pixels (the book: 200)"
    )
    steps: int = Field(20, ge=1, le=1000, description="gradient ascent steps (the book: 30)")
    learning_rate: float = Field(10.0, gt=0, description="gradient ascent step size")
    seed: int = Field(0, ge=0, description="seed of the inputs' starting noise")


EPOCHS = "passes over the training images"


class TrainParams(_Section):
    """What every trained model's section has."""

    epochs: int = Field(ge=1, le=10_000, description=EPOCHS)
    batch_size: int = Field(32, ge=1, description="images per training step")
    learning_rate: float = Field(gt=0, lt=1)
    seed: int = Field(42, ge=0, description="initial weights and the order of the batches")


class ClassifierParams(TrainParams):
    """The dense classifier on VGG16's features (chapter 8, feature extraction)."""

    mode: Literal["features", "in_model"] = Field(
        "features",
        description="features: the head trains on the stored features (and augmented views); "
        "in_model: the book's frozen conv base inside the model, augmentation every epoch",
    )
    epochs: int = Field(20, ge=1, le=10_000, description=EPOCHS)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    units: int = Field(256, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)


class FinetuneParams(TrainParams):
    """Fine-tuning the top of VGG16's conv base with the classifier (chapter 8)."""

    epochs: int = Field(3, ge=1, le=10_000, description=EPOCHS)
    learning_rate: float = Field(1e-5, gt=0, lt=1)
    unfreeze: int = Field(4, ge=1, le=19, description="last conv-base layers made trainable")


class ScratchParams(TrainParams):
    """The from-scratch convnet; the defaults are the book's recipe (params-best.yaml: ours)."""

    arch: Literal["book", "xception"] = Field(
        "book", description="book: chapter 8's convnet; xception: chapter 9's mini-Xception"
    )
    epochs: int = Field(20, ge=1, le=10_000, description=EPOCHS)
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="(peak) learning rate")
    dropout: float = Field(0.5, ge=0, lt=1)
    optimizer: Literal["rmsprop", "adamw"] = "rmsprop"
    weight_decay: float = Field(0.0, ge=0, lt=1, description="AdamW's decoupled weight decay")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: linear warmup, then cosine decay to 0 at the last epoch"
    )
    warmup_epochs: int = Field(0, ge=0, description="linear warmup of the cosine schedule")
    compute: Literal["float32", "mixed_bfloat16"] = Field(
        "float32", description="mixed_bfloat16: the convnet computes in bfloat16"
    )
    cache_images: bool = Field(
        False, description="decode and resize every image once, keep them in memory"
    )
    monitor: Literal["val_loss", "val_accuracy"] = Field(
        "val_loss",
        description="which epoch is kept: the lowest val_loss (the book's) or the "
        "highest val_accuracy",
    )
    patience: int = Field(
        0,
        ge=0,
        description="stop after this many epochs without a lower "
        "validation loss; 0: train every epoch",
    )
    keep: Literal["best", "last"] = Field(
        "best",
        description="best: the epoch best by monitor (the book's checkpoint); last: the last "
        "epoch trained, for a schedule that decays to 0 (200 validation photos choose an epoch "
        "by luck)",
    )

    @model_validator(mode="after")
    def _warmup_fits(self) -> ScratchParams:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})"
            )
        return self


class EvaluateParams(_Section):
    """How models are scored on the test split, and when the champion moves."""

    threshold: float = Field(0.5, gt=0, lt=1)
    batch_size: int = Field(32, ge=1)
    bootstrap: int = Field(
        1000, ge=0, le=100_000, description="resamples for the intervals of AUC, log loss, F1"
    )
    seed: int = Field(42, ge=0, description="the bootstrap's resampling seed")
    champion_gate: Literal["paired-test", "any-gain"] = Field(
        "paired-test",
        description="paired-test: the challenger must beat the champion on the same test images "
        "by McNemar's exact test; any-gain: any higher accuracy moves the champion",
    )
    champion_alpha: float = Field(
        0.05, gt=0, lt=1, description="the paired test's level (one-sided p below it moves)"
    )
    gradcam: int = Field(
        8,
        ge=0,
        le=32,
        description="Grad-CAM heatmaps per model over its N most confident mistakes and N/2 "
        "most confident right answers on the test set; 0 turns them off",
    )


class MlflowParams(_Section):
    """Where the runs are logged."""

    experiment: str = Field("catdog", min_length=1)


class Params(_Section):
    """All parameters of the pipeline, one attribute per ``params.yaml`` section."""

    data: DataParams = DataParams()
    ingest: IngestParams = IngestParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    features: FeaturesParams = FeaturesParams()
    filters: FiltersParams = FiltersParams()
    classifier: ClassifierParams = ClassifierParams()
    finetune: FinetuneParams = FinetuneParams()
    scratch: ScratchParams = ScratchParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()

    def section(self, dotted: str) -> Any:
        """Return the value at a dotted key such as ``data.image_size``."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


def _close_match(loc: Sequence[Any]) -> str:
    """`` (did you mean 'x'?)`` for a misspelt key at ``loc``, '' if nothing is close."""
    model: Any = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        model = field.annotation if field else None
    if model is None or not hasattr(model, "model_fields"):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), model.model_fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(dotted: str) -> str:
    """Why ``dotted`` is not a key of the params ('' if it is one), naming the first unknown part,
    e.g. ``classifer: unknown key (did you mean 'classifier'?)``."""
    model: Any = Params
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            prefix = ".".join(parts[: index + 1])
            return f"{prefix}: unknown key" + _close_match(parts[: index + 1])
        model = fields[part].annotation
    return ""


def _origin_of(key: str, origin: str, origins: Mapping[str, str]) -> str:
    """Where the value at ``key`` came from: the override that set it, else the file."""
    for dotted, source in origins.items():
        if key == dotted or key.startswith(f"{dotted}.") or dotted.startswith(f"{key}."):
            return source
    return origin


def _format_error(error: ValidationError, origin: str, origins: Mapping[str, str]) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<top level>"
        if item["type"] == "extra_forbidden":
            message = "unknown key" + _close_match(item["loc"])
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{_origin_of(key, origin, origins)}: {key}: {message}")
    return "; ".join(problems)


def parse_params(
    raw: Mapping[str, Any] | None,
    *,
    origin: str = "params",
    origins: Mapping[str, str] | None = None,
) -> Params:
    """Validate a mapping of parameters.

    Args:
        raw: The parsed YAML mapping (missing sections take their defaults).
        origin: Where the mapping came from, used in error messages.
        origins: Dotted key -> where its value came from instead (e.g. ``-S key=value``), so
            an error names the override that set a bad value rather than the file.

    Returns:
        The validated, frozen parameters.

    Raises:
        ParamsError: On an unknown key, a wrong type or an impossible value, in one line that
            names each key at fault and where its value came from.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(dict(raw))
    except ValidationError as error:
        raise ParamsError(_format_error(error, origin, origins or {})) from None


def flat_params(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A params mapping as dotted keys and their leaf values, e.g. ``{"scratch.epochs": 45}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat |= {f"{key}.{k}": v for k, v in flat_params(value).items()}
        else:
            flat[str(key)] = value
    return flat


def given_values(prefix: str, section: BaseModel) -> dict[str, Any]:
    """The values a caller gave in ``section`` (not those it left to their defaults), as dotted
    keys under ``prefix`` and plain YAML values, e.g. ``{"classifier.epochs": 5}`` for a
    ``ClassifierParams`` made from ``{"epochs": 5}``."""
    given: dict[str, Any] = {}
    for name in section.model_fields_set:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            given |= given_values(f"{prefix}.{name}", value)
        else:
            dumped = section.model_dump(mode="json", include={name})[name]
            given[f"{prefix}.{name}"] = dumped
    return given


def missing_keys(raw: Mapping[str, Any]) -> list[str]:
    """The keys of the schema that ``raw`` (a params file's mapping) does not hold, dotted.

    ``params.yaml`` must hold every key: ``dvc.yaml`` reads them from the file, and ``dvc.lock``
    records what it read, so a key left to its default would be neither checked nor recorded.
    """
    present = set(flat_params(raw))
    return [key for key in flat_params(Params().model_dump()) if key not in present]


def read_params_file(path: Path, *, display: str | None = None) -> dict[str, Any]:
    """The mapping in a params file (``{}`` if empty); ``display`` names it in errors.

    Raises:
        ParamsError: The file is missing, is not YAML, or does not hold a mapping.
    """
    name = display or str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{name}: params file not found") from None
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise ParamsError(f"{name}: not valid YAML ({problem}); fix the file") from None
    if raw is not None and not isinstance(raw, Mapping):
        raise ParamsError(f"{name}: expected a mapping of sections, got {type(raw).__name__}")
    return dict(raw or {})


def load_params(path: Path, *, display: str | None = None) -> Params:
    """Load and validate a params file (``display`` names it in errors, e.g. ``params.yaml``).

    Raises:
        ParamsError: If the file is missing, is not YAML, or holds invalid parameters.
    """
    name = display or str(path)
    return parse_params(read_params_file(path, display=name), origin=name)
