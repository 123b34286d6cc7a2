"""Classifier task: the book's dense head trained on the VGG16 features (and augmented views)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from prefect import task

from catdog import vocabulary as vocab
from catdog.feature_store import load_features
from catdog.results import StageResult
from catdog.seeding import seed_everything
from catdog.training import EpochCallback, TrainResult, train
from catdog.vgg16 import make_conv_base, make_dense_head, make_finetune_model
from tasks.common import TASK_OPTIONS, epoch_progress
from tasks.image_training import in_model_augmentation, train_on_images
from tasks.training_outputs import save_training_outputs

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import AugmentParams, ClassifierParams, DataParams


@task(name="classifier", **TASK_OPTIONS)
def classifier(
    root: Path,
    data: DataParams,
    augment: AugmentParams,
    classifier: ClassifierParams,
    on_epoch_end: EpochCallback | None = None,
) -> StageResult:
    """Train the dense head (on features, or in-model on images); keep the best epoch."""
    p = classifier
    folder = root / vocab.FEATURES_DIR
    seed_everything(p.seed)
    if p.mode == "in_model":
        result = _train_in_model(p, data.image_size, augment, root, on_epoch_end)
    else:
        x_train, y_train = load_features(folder, "train")
        x_aug, y_aug = load_features(folder, "train_aug")
        x_val, y_val = load_features(folder, "validation")
        x = np.concatenate([x_train, x_aug]).astype("float32")
        y = np.concatenate([y_train, y_aug])
        model = make_dense_head(tuple(x.shape[1:]), units=p.units, dropout=p.dropout, seed=p.seed)
        result = train(
            model,
            (x, y),
            (np.asarray(x_val, dtype="float32"), y_val),
            epochs=p.epochs,
            learning_rate=p.learning_rate,
            batch_size=p.batch_size,
            on_epoch_end=epoch_progress("classifier", p.epochs, on_epoch_end),
        )
    weights = json.loads((folder / "meta.json").read_text())["weights"]
    return save_training_outputs(
        "classifier", result, root, tags={"weights": weights["label"], "mode": p.mode}
    )


def _train_in_model(
    p: ClassifierParams,
    size: int,
    aug: AugmentParams,
    root: Path,
    on_epoch_end: EpochCallback | None,
) -> TrainResult:
    """The book's variant: frozen conv base inside the model, augmentation at every epoch."""
    conv_base = make_conv_base(size, root / vocab.CONV_BASE_WEIGHTS)
    head = make_dense_head(
        conv_base.output_shape[1:], units=p.units, dropout=p.dropout, seed=p.seed
    )
    model = make_finetune_model(
        conv_base, head, in_model_augmentation(aug, p.seed), image_size=size, unfreeze=0
    )
    return train_on_images("classifier", model, root, size, p, on_epoch_end)
