"""Augment: K seeded augmented views of every training image, stored as one uint8 array.

The views are what the book's in-model augmentation would show the network; materialising them
once lets the features stage run VGG16 over each view a single time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.augmentation import make_augmentation
from catdog.images import make_dataset
from catdog.seeding import seed_everything
from catdog.vocabulary import VIEWS_ARRAY, VIEWS_INDEX

__all__ = ["materialise_views"]


def materialise_views(
    paths: Sequence[str],
    labels: Sequence[str],
    out_dir: Path,
    *,
    image_size: int,
    views: int,
    flip: str,
    rotation: float,
    zoom: float,
    translation: float = 0.0,
    seed: int,
    root: Path | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write ``views`` augmented copies of each image to ``out_dir`` (streamed, batch by batch).

    Args:
        paths: Training images, relative to ``root`` if it is given.
        labels: Their labels.
        out_dir: Folder for ``views.npy`` (uint8, N*views x size x size x 3) and ``views.csv``.
        image_size: Side of the stored views.
        views: Augmented views per image (0 writes empty files).
        flip: RandomFlip mode.
        rotation: RandomRotation factor.
        zoom: RandomZoom factor.
        translation: RandomTranslation factor (0: no translation).
        seed: Seed of the augmentation; the same seed gives byte-identical views.
        root: The folder ``paths`` are relative to (the workspace); the index keeps the paths
            as given, so it reads the same wherever the workspace is.
        batch_size: Images augmented at once.
        progress: Called as ``progress(done, total)`` after each batch.

    Returns:
        The index of the views: row i of ``views.npy`` is (path, label, view) of row i.
    """
    seed_everything(seed)
    augmentation = make_augmentation(
        flip=flip, rotation=rotation, zoom=zoom, translation=translation, seed=seed
    )
    total = len(paths) * views
    if total == 0:  # K=0: the book's plain feature extraction (an empty file cannot be mapped)
        np.save(out_dir / VIEWS_ARRAY, np.zeros((0, image_size, image_size, 3), dtype="uint8"))
        index = pd.DataFrame(columns=["path", "label", "view"])
        index.to_csv(out_dir / VIEWS_INDEX, index=False, lineterminator="\n")
        return index
    array = np.lib.format.open_memmap(
        out_dir / VIEWS_ARRAY, mode="w+", dtype="uint8", shape=(total, image_size, image_size, 3)
    )
    rows: list[dict[str, object]] = []
    written = 0
    for view in range(views):
        files = [str(root / path) if root is not None else path for path in paths]
        dataset = make_dataset(files, image_size, batch_size)
        for batch in dataset:
            augmented = np.asarray(augmentation(batch, training=True))
            count = len(augmented)
            array[written : written + count] = np.clip(np.round(augmented), 0, 255).astype("uint8")
            written += count
            if progress is not None:
                progress(written, total)
        rows.extend(
            {"path": p, "label": lab, "view": view} for p, lab in zip(paths, labels, strict=True)
        )
    array.flush()
    del array
    index = pd.DataFrame(rows, columns=["path", "label", "view"])
    index.to_csv(out_dir / VIEWS_INDEX, index=False, lineterminator="\n")
    return index
