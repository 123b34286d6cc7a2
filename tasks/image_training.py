"""What the models trained on images share (finetune, scratch, classifier in_model mode)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from catdog import vocabulary as vocab
from catdog.augmentation import make_augmentation
from catdog.images import make_dataset
from catdog.manifest import read_manifest, split_rows
from catdog.training import EpochCallback, TrainResult, train
from tasks.common import epoch_progress

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import AugmentParams, TrainParams


def image_datasets(
    root: Path, image_size: int, batch_size: int, seed: int, *, cache: bool = False
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Shuffled training batches and ordered validation batches of (images, targets); with
    ``cache`` each image is decoded once and kept in memory."""
    manifest = read_manifest(root / vocab.MANIFEST)

    def rows(split: str) -> tuple[list[str], list[str]]:
        part = split_rows(manifest, split)
        return [str(root / p) for p in part["path"]], list(part["label"])

    train_paths, train_labels = rows("train")
    val_paths, val_labels = rows("validation")
    return (
        make_dataset(
            train_paths, image_size, batch_size, train_labels, shuffle_seed=seed, cache=cache
        ),
        make_dataset(val_paths, image_size, batch_size, val_labels, cache=cache),
    )


def in_model_augmentation(augment: AugmentParams, seed: int) -> keras.Sequential:
    """The augment section's flip, rotation, zoom and translation as in-model layers, seeded."""
    return make_augmentation(
        flip=augment.flip,
        rotation=augment.rotation,
        zoom=augment.zoom,
        translation=augment.translation,
        seed=seed,
    )


def train_on_images(
    stage: str,
    model: keras.Model,
    root: Path,
    image_size: int,
    section: TrainParams,
    on_epoch_end: EpochCallback | None,
    *,
    optimizer: Callable[[int], keras.optimizers.Optimizer] | None = None,
    cache: bool = False,
    patience: int = 0,
    monitor: str = "val_loss",
    keep: str = "best",
) -> TrainResult:
    """Train ``model`` on the training split's images with a section's epochs, batch size,
    learning rate and seed, validating on the validation split; log each epoch.

    ``optimizer`` makes the optimizer from the steps per epoch (default: RMSprop at the
    section's rate); the epoch kept is the best by ``monitor`` (or the last with ``keep="last"``),
    and ``patience`` > 0 stops once it stops improving.
    """
    train_data, val_data = image_datasets(
        root, image_size, section.batch_size, section.seed, cache=cache
    )
    steps = int(train_data.cardinality())
    return train(
        model,
        train_data,
        val_data,
        epochs=section.epochs,
        learning_rate=section.learning_rate,
        optimizer=optimizer(steps) if optimizer else None,
        patience=patience or None,
        monitor=monitor,
        keep=keep,
        on_epoch_end=epoch_progress(stage, section.epochs, on_epoch_end),
    )
