"""Finetune task: conv base + trained head, block5 unfrozen, RMSprop at a low learning rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task

from catdog import vocabulary as vocab
from catdog.models import load_model
from catdog.results import StageResult
from catdog.seeding import seed_everything
from catdog.training import EpochCallback
from catdog.vgg16 import make_conv_base, make_finetune_model
from tasks.common import TASK_OPTIONS
from tasks.image_training import in_model_augmentation, train_on_images
from tasks.training_outputs import save_training_outputs

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import AugmentParams, DataParams, FinetuneParams


@task(name="finetune", **TASK_OPTIONS)
def finetune(
    root: Path,
    data: DataParams,
    augment: AugmentParams,
    finetune: FinetuneParams,
    on_epoch_end: EpochCallback | None = None,
) -> StageResult:
    """Fine-tune VGG16's top block with the trained head on augmented images."""
    p, size, aug = finetune, data.image_size, augment
    seed_everything(p.seed)
    conv_base = make_conv_base(size, root / vocab.CONV_BASE_WEIGHTS)
    classifier = load_model(root / vocab.model_path("classifier"))
    # classifier.mode=in_model saves the whole image model: its head is the nested dense_head
    head = classifier if classifier.input_shape[-1] != 3 else classifier.get_layer("dense_head")
    augmentation = in_model_augmentation(aug, p.seed)
    model = make_finetune_model(conv_base, head, augmentation, image_size=size, unfreeze=p.unfreeze)
    result = train_on_images("finetune", model, root, size, p, on_epoch_end)
    meta = json.loads((root / vocab.FEATURES_META).read_text())
    return save_training_outputs(
        "finetune", result, root, tags={"weights": meta["weights"]["label"]}
    )
