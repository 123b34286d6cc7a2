"""Augment task: K seeded augmented views of each training image, and a preview grid PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from catdog import vocabulary as vocab
from catdog.augment import materialise_views
from catdog.images import read_images
from catdog.io import atomic_dir, remove_stale_staging
from catdog.manifest import read_manifest, split_rows
from catdog.plots.grid import plot_image_grid
from catdog.results import StageResult
from catdog.vocabulary import VIEWS_ARRAY
from tasks.common import TASK_OPTIONS, progress_logger

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import AugmentParams, DataParams


def _write_preview(
    train: pd.DataFrame, views: np.ndarray, per_image: int, count: int, root: Path
) -> Path:
    """A grid with one training image per row, cats and dogs alternating: original, then views."""
    cats = np.flatnonzero(train["label"].to_numpy() == "cat")
    dogs = np.flatnonzero(train["label"].to_numpy() == "dog")
    chosen = [int(i) for pair in zip(cats, dogs, strict=False) for i in pair][:count]
    size = views.shape[1]
    originals = read_images([str(root / train["path"].iloc[i]) for i in chosen], size)
    tiles, titles = [], []
    for row, i in enumerate(chosen):
        label = train["label"].iloc[i]
        tiles.append(originals[row])
        titles.append(f"{label} original")
        for view in range(per_image):
            tiles.append(views[view * len(train) + i])
            titles.append(f"view {view + 1}")
    return plot_image_grid(
        np.stack(tiles),
        root / vocab.AUGMENT_PREVIEW,
        titles=titles,
        ncols=per_image + 1,
        title="Augmented views",
    )


@task(name="augment", **TASK_OPTIONS)
def augment(root: Path, data: DataParams, augment: AugmentParams) -> StageResult:
    """Materialise the augmented views of the training split as data/augmented."""
    p = augment
    manifest = read_manifest(root / vocab.MANIFEST)
    train = split_rows(manifest, "train")
    out_dir = root / vocab.AUGMENTED_DIR
    remove_stale_staging(out_dir.parent)
    with atomic_dir(out_dir) as staging:
        index = materialise_views(
            list(train["path"]),
            list(train["label"]),
            staging,
            image_size=data.image_size,
            views=p.views,
            flip=p.flip,
            rotation=p.rotation,
            zoom=p.zoom,
            translation=p.translation,
            seed=p.seed,
            root=root,
            progress=progress_logger("augment: views"),
        )
        views = np.load(staging / VIEWS_ARRAY, mmap_mode="r")
        preview = _write_preview(train, views, p.views, min(p.preview, len(train)), root)
        del views
    return StageResult(
        "augment",
        [out_dir, preview],
        metrics={"views": float(len(index)), "train_images": float(len(train))},
        artifacts=[preview],
        summary=f"{len(index)} views of {len(train)} training images",
    )
