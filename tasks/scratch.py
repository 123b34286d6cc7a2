"""Scratch task: the book's small convnet trained from scratch with augmentation (baseline)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from catdog.models import make_augmentation, make_scratch_model
from catdog.params import Params
from catdog.training import EpochCallback, seed_everything, train
from tasks.common import TASK_OPTIONS, StageResult
from tasks.image_training import image_datasets
from tasks.training_outputs import save_training_outputs


@task(name="scratch", **TASK_OPTIONS)
def scratch(params: Params, root: Path, on_epoch_end: EpochCallback | None = None) -> StageResult:
    """Train the small convnet with in-model augmentation and dropout."""
    p, size, aug = params.scratch, params.data.image_size, params.augment
    seed_everything(p.seed)
    augmentation = make_augmentation(
        flip=aug.flip, rotation=aug.rotation, zoom=aug.zoom, seed=p.seed
    )
    model = make_scratch_model(size, augmentation, dropout=p.dropout)
    train_data, val_data = image_datasets(root, size, p.batch_size, p.seed)
    result = train(
        model,
        train_data,
        val_data,
        epochs=p.epochs,
        learning_rate=p.learning_rate,
        on_epoch_end=on_epoch_end,
    )
    return save_training_outputs("scratch", result, root)
