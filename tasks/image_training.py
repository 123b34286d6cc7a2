"""Inputs shared by the two models trained on images (finetune, scratch)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from catdog import paths
from catdog.images import make_dataset
from catdog.split import read_manifest


def image_datasets(
    root: Path, image_size: int, batch_size: int, seed: int
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Shuffled training batches and ordered validation batches of (images, targets)."""
    manifest = read_manifest(root / paths.MANIFEST)

    def rows(split: str) -> tuple[list[str], list[str]]:
        part = manifest[manifest["split"] == split]
        return [str(root / p) for p in part["path"]], list(part["label"])

    train_paths, train_labels = rows("train")
    val_paths, val_labels = rows("validation")
    return (
        make_dataset(train_paths, image_size, batch_size, train_labels, shuffle_seed=seed),
        make_dataset(val_paths, image_size, batch_size, val_labels),
    )
