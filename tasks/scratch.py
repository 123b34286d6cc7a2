"""Scratch task: a convnet trained from scratch with augmentation (the book's is the baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import keras
from prefect import task

from catdog.convnets import make_scratch_model
from catdog.results import StageResult
from catdog.seeding import seed_everything
from catdog.training import EpochCallback, make_optimizer
from tasks.common import TASK_OPTIONS
from tasks.image_training import in_model_augmentation, train_on_images
from tasks.training_outputs import save_training_outputs

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import AugmentParams, DataParams, ScratchParams


@task(name="scratch", **TASK_OPTIONS)
def scratch(
    root: Path,
    data: DataParams,
    augment: AugmentParams,
    scratch: ScratchParams,
    on_epoch_end: EpochCallback | None = None,
) -> StageResult:
    """Train the ``scratch.arch`` convnet with in-model augmentation and dropout."""
    p, size, aug = scratch, data.image_size, augment
    seed_everything(p.seed)
    augmentation = in_model_augmentation(aug, p.seed)
    model = make_scratch_model(
        size, augmentation, arch=p.arch, dropout=p.dropout, seed=p.seed, compute=p.compute
    )

    def optimizer(steps_per_epoch: int) -> keras.optimizers.Optimizer:
        return make_optimizer(
            p.optimizer,
            p.learning_rate,
            schedule=p.schedule,
            epochs=p.epochs,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=p.warmup_epochs,
            weight_decay=p.weight_decay,
        )

    result = train_on_images(
        "scratch",
        model,
        root,
        size,
        p,
        on_epoch_end,
        optimizer=optimizer,
        cache=p.cache_images,
        patience=p.patience,
        monitor=p.monitor,
        keep=p.keep,
    )
    return save_training_outputs("scratch", result, root)
