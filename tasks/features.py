"""Features task: VGG16 conv-base features of every split and augmented view, streamed to disk."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
from prefect import task

from catdog import paths
from catdog.augment import VIEWS_ARRAY, VIEWS_INDEX
from catdog.features import extract_to_file, feature_extractor, view_batches
from catdog.images import make_dataset, targets
from catdog.io import atomic_dir, atomic_file, remove_stale_staging, write_json
from catdog.models import make_conv_base
from catdog.params import Params
from catdog.split import SPLITS, read_manifest
from catdog.training import seed_everything
from catdog.weights import resolve_weights
from tasks.common import TASK_OPTIONS, StageResult, progress_logger, run_logger


@task(name="features", **TASK_OPTIONS)
def features(params: Params, root: Path) -> StageResult:
    """Run the conv base over train, validation, test and the augmented views."""
    p, size = params.features, params.data.image_size
    logger = run_logger()
    weights = resolve_weights(p.weights, root=root)  # before any heavy work
    if weights.warning:
        logger.warning(weights.warning)
    logger.info("features: VGG16 weights %s", weights.label)
    seed_everything(p.seed)
    conv_base = make_conv_base(size, weights.path)  # float32 variables, saved as such below
    if p.compute == "mixed_bfloat16":  # the same weights, computed in bfloat16
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            extractor = feature_extractor(make_conv_base(size), weights_from=conv_base)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    else:
        extractor = feature_extractor(conv_base)
    manifest = read_manifest(root / paths.MANIFEST)
    out_dir = root / paths.FEATURES_DIR
    remove_stale_staging(out_dir.parent)
    shapes: dict[str, list[int]] = {}
    index_parts = []
    with atomic_dir(out_dir) as staging:
        for split in SPLITS:
            rows = manifest[manifest["split"] == split]
            shape = extract_to_file(
                extractor,
                (
                    np.asarray(b)
                    for b in make_dataset(
                        [str(root / path) for path in rows["path"]], size, p.batch_size
                    )
                ),
                len(rows),
                staging / f"{split}.npy",
                dtype=p.dtype,
                progress=progress_logger(f"features: {split}"),
            )
            np.save(staging / f"{split}_targets.npy", targets(rows["label"]))
            shapes[split] = list(shape)
            index_parts.append(rows[["path", "label"]].assign(set=split, view=-1))
        views = np.load(root / paths.AUGMENTED_DIR / VIEWS_ARRAY, mmap_mode="r")
        views_index = pd.read_csv(root / paths.AUGMENTED_DIR / VIEWS_INDEX)
        shape = extract_to_file(
            extractor,
            view_batches(views, p.batch_size),
            len(views),
            staging / "train_aug.npy",
            dtype=p.dtype,
            progress=progress_logger("features: augmented views"),
        )
        del views
        np.save(staging / "train_aug_targets.npy", targets(views_index["label"]))
        shapes["train_aug"] = list(shape)
        index_parts.append(views_index.assign(set="train_aug"))
        pd.concat(index_parts, ignore_index=True)[["set", "path", "label", "view"]].to_csv(
            staging / "index.csv", index=False, lineterminator="\n"
        )
        meta = {
            "image_size": size,
            "dtype": p.dtype,
            "feature_shape": list(extractor.output_shape[1:]),
            "shapes": shapes,
            "weights": {
                "requested": weights.requested,
                "kind": weights.kind,
                "label": weights.label,
                "sha256": weights.sha256,
                "pretrained": weights.pretrained,
                "warning": weights.warning,
            },
        }
        write_json(staging / "meta.json", meta)
        # The conv base exactly as used here: finetune starts from it, whatever the weights were.
        conv_base_path = root / paths.CONV_BASE_WEIGHTS
        with atomic_file(conv_base_path) as tmp:
            conv_base.save_weights(tmp)
    metrics = {f"{name}_images": float(shape[0]) for name, shape in shapes.items()}
    metrics["pretrained"] = float(weights.pretrained)
    return StageResult(
        "features",
        [out_dir, conv_base_path],
        metrics=metrics,
        tags={"weights": weights.label, "weights.requested": weights.requested},
        warnings=[weights.warning] if weights.warning else [],
        artifacts=[out_dir / "meta.json"],
    )
