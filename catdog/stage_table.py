"""The pipeline's stages: the one source of truth for ``dvc.yaml`` and for ``catdog run``.

Each :class:`Stage` lists exactly the code, data and params it reads and the outputs it writes.
``dvc.yaml`` is generated from this table (``catdog dvc-yaml``; a test fails when the committed file
drifts), and ``catdog run`` uses the same table to decide which stages are up to date, so the two
ways of running the pipeline re-run the same stages for the same changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.code_deps import code_deps
from catdog.vocabulary import (
    AUGMENT_PREVIEW,
    AUGMENTED_DIR,
    COMPARISON,
    CONV_BASE_WEIGHTS,
    EVALUATE_FIGURES,
    FEATURES_DIR,
    FEATURES_META,
    INGEST_REPORT,
    INGEST_SUMMARY,
    MANIFEST,
    METRICS,
    MODELS,
    PREDICTIONS_DIR,
    RAW_DIR,
    ROC_DIR,
    history_figure,
    history_path,
    model_path,
)

__all__ = ["STAGES", "STAGE_NAMES", "Stage", "dvc_yaml", "fingerprint", "hash_path", "stage"]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, as DVC and the Prefect pipeline flow both see it."""

    name: str
    description: str
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    uncached_outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    image_plots: tuple[str, ...] = ()

    @property
    def cmd(self) -> str:
        # `python -m` runs the workspace's own code (e.g. in a queued `dvc exp run` copy).
        return f"python -m cli stage {self.name}"

    @property
    def code(self) -> tuple[str, ...]:
        """The project files the stage's task runs (read from its imports, never listed by hand)."""
        return code_deps(f"tasks.{self.name}")

    @property
    def all_deps(self) -> tuple[str, ...]:
        return (*self.code, *self.deps)

    @property
    def all_outs(self) -> tuple[str, ...]:
        return (*self.outs, *self.uncached_outs, *self.metrics, *self.image_plots)


STAGES: tuple[Stage, ...] = (
    Stage(
        name="ingest",
        description="Decode and check every image of data.source; write data/raw and a report.",
        params=("data.source", "data.synthetic", "ingest"),
        # the source itself (the generator module or the user's folder/zip), from params.yaml
        deps=("${data.source}",),
        outs=(RAW_DIR,),
        uncached_outs=(INGEST_REPORT, INGEST_SUMMARY),
    ),
    Stage(
        name="split",
        description="Stratified, seeded train/validation/test manifest; no content in two splits.",
        deps=(RAW_DIR,),
        params=("split",),
        outs=(MANIFEST,),
    ),
    Stage(
        name="augment",
        description="K seeded augmented views of every training image, and a preview grid.",
        deps=(RAW_DIR, MANIFEST),
        params=("data.image_size", "augment"),
        outs=(AUGMENTED_DIR,),
        image_plots=(AUGMENT_PREVIEW,),
    ),
    Stage(
        name="features",
        description="VGG16 conv-base features of every split and augmented view, streamed.",
        deps=(RAW_DIR, MANIFEST, AUGMENTED_DIR),
        params=("data.image_size", "features"),
        outs=(FEATURES_DIR, CONV_BASE_WEIGHTS),
    ),
    Stage(
        name="classifier",
        description="The book's dense head trained on the features; best epoch by val loss.",
        # the images, conv base and augmentation are read in classifier.mode=in_model
        deps=(RAW_DIR, MANIFEST, FEATURES_DIR, CONV_BASE_WEIGHTS),
        params=(
            "data.image_size",
            "augment.flip",
            "augment.rotation",
            "augment.zoom",
            "classifier",
        ),
        outs=(model_path("classifier"),),
        uncached_outs=(history_path("classifier"),),
        image_plots=(history_figure("classifier"),),
    ),
    Stage(
        name="finetune",
        description="Conv base + trained head, block5 unfrozen, RMSprop at a low learning rate.",
        deps=(RAW_DIR, MANIFEST, FEATURES_META, CONV_BASE_WEIGHTS, model_path("classifier")),
        params=("data.image_size", "augment.flip", "augment.rotation", "augment.zoom", "finetune"),
        outs=(model_path("finetune"),),
        uncached_outs=(history_path("finetune"),),
        image_plots=(history_figure("finetune"),),
    ),
    Stage(
        name="scratch",
        description="The book's small convnet trained from scratch with augmentation: baseline.",
        deps=(RAW_DIR, MANIFEST),
        params=("data.image_size", "augment.flip", "augment.rotation", "augment.zoom", "scratch"),
        outs=(model_path("scratch"),),
        uncached_outs=(history_path("scratch"),),
        image_plots=(history_figure("scratch"),),
    ),
    Stage(
        name="evaluate",
        description="Every model on the same test set: metrics, confusion matrices, ROC curves.",
        deps=(RAW_DIR, MANIFEST, FEATURES_DIR, *(model_path(m) for m in MODELS)),
        params=("data.image_size", "evaluate"),
        uncached_outs=(PREDICTIONS_DIR, ROC_DIR, COMPARISON),
        metrics=(METRICS,),
        image_plots=(EVALUATE_FIGURES,),
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    """Return the stage called ``name``; ``KeyError`` names the known stages otherwise."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")


def _plot_defs() -> list[dict[str, Any]]:
    def per_model(folder: str, column: str | list[str]) -> dict[str, Any]:
        return {f"{folder}/{m}.csv": column for m in MODELS}

    def per_history(columns: list[str]) -> dict[str, Any]:
        return {history_path(m): columns for m in MODELS}

    return [
        {
            "confusion": {
                "template": "confusion",
                "x": "actual",
                "y": per_model(PREDICTIONS_DIR, "predicted"),
                "title": "Confusion matrix on the test set",
            }
        },
        {
            "roc": {
                "template": "simple",
                "x": "fpr",
                "y": per_model(ROC_DIR, "tpr"),
                "title": "ROC on the test set",
                "x_label": "false positive rate",
                "y_label": "true positive rate",
            }
        },
        {
            "val_loss": {
                "template": "linear",
                "x": "epoch",
                "y": per_history(["loss", "val_loss"]),
                "title": "Loss per epoch",
            }
        },
        {
            "val_accuracy": {
                "template": "linear",
                "x": "epoch",
                "y": per_history(["accuracy", "val_accuracy"]),
                "title": "Accuracy per epoch",
            }
        },
    ]


def dvc_yaml() -> dict[str, Any]:
    """Return the content of ``dvc.yaml`` for :data:`STAGES`."""
    stages: dict[str, Any] = {}
    for s in STAGES:
        entry: dict[str, Any] = {"desc": s.description, "cmd": s.cmd, "deps": list(s.all_deps)}
        entry["params"] = list(s.params)
        outs: list[Any] = list(s.outs) + [{p: {"cache": False}} for p in s.uncached_outs]
        if outs:
            entry["outs"] = outs
        if s.metrics:
            entry["metrics"] = [{p: {"cache": False}} for p in s.metrics]
        if s.image_plots:
            entry["plots"] = [{p: {"cache": False}} for p in s.image_plots]
        stages[s.name] = entry
    return {"stages": stages, "plots": _plot_defs()}


def _hash_file(path: Path, digest: Any) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def hash_path(path: Path) -> str | None:
    """Return a content hash of a file or a directory tree, or None if it does not exist."""
    if not path.exists():
        return None
    digest = hashlib.sha256()
    if path.is_file():
        _hash_file(path, digest)
        return digest.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file_path = Path(root, name)
            digest.update(file_path.relative_to(path).as_posix().encode() + b"\0")
            _hash_file(file_path, digest)
            digest.update(b"\0")
    return digest.hexdigest()


def fingerprint(
    s: Stage, root: Path, params: Mapping[str, Any], extra_deps: Iterable[Path] = ()
) -> dict[str, Any]:
    """Return what a stage's result depends on: its code, data, params and extra deps.

    Args:
        s: The stage.
        root: The workspace the stage's paths are relative to.
        params: The stage's params values keyed as in :attr:`Stage.params`.
        extra_deps: Further inputs (e.g. a source folder) hashed alongside the declared ones.
    """
    # templated deps (``${data.source}``) are resolved by the caller and passed as extra_deps
    deps = {p: hash_path(root / p) for p in s.all_deps if not p.startswith("${")}
    for extra in extra_deps:
        deps[str(extra)] = hash_path(extra)
    return {"deps": deps, "params": json.loads(json.dumps(dict(params), sort_keys=True))}
