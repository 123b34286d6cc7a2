"""The pipeline's stages, one row each: the one source of truth for ``dvc.yaml``, the Prefect
flows, ``catdog run`` and the model registry.

Each :class:`Stage` lists exactly the data and params it reads and the outputs it writes; its code
is read from its task's imports; its task is ``tasks/<name>.py``'s function ``<name>``, called
with the params sections the row lists; a stage that trains a model names it (registered name,
the book's figure) and logs its epochs. ``dvc.yaml`` is generated from this table (``catdog
dvc-yaml``; a test fails when the committed file drifts), ``flows/stages.py`` builds one flow per
row, and ``catdog run`` uses the same table to decide which stages are up to date, so every way of
running the pipeline re-runs the same stages for the same changes.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    FILTERS_FIGURES,
    INGEST_REPORT,
    INGEST_SUMMARY,
    MANIFEST,
    METRICS,
    PREDICTIONS_DIR,
    RAW_DIR,
    ROC_DIR,
    history_figure,
    history_path,
    model_path,
)

__all__ = [
    "BOOK_TEST_ACCURACY",
    "MODELS",
    "REGISTERED_NAMES",
    "STAGES",
    "STAGE_NAMES",
    "Model",
    "Stage",
    "dvc_yaml",
    "lineage_params",
    "stage",
    "upstream",
]


# The augment section's keys that shape the in-model augmentation layers (not its views, preview)
AUGMENTATION = ("augment.flip", "augment.rotation", "augment.zoom", "augment.translation")


@dataclass(frozen=True)
class Model:
    """The model a stage trains: its name in MLflow's registry and the book's figure for it."""

    registered_name: str
    #: Chapter 8's test accuracy on Kaggle's photos (2,000 training images at 180x180).
    book_accuracy: float


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, as DVC, its Prefect flow and the pipeline flow all see it."""

    name: str
    description: str
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    image_plots: tuple[str, ...] = ()
    model: Model | None = None  # the model this stage trains, if any
    logs_epochs: bool = False  # its task takes on_epoch_end: per-epoch metrics go to MLflow

    @property
    def task(self) -> tuple[str, str]:
        """The task's module and function: ``tasks.<name>``, ``<name>``."""
        return f"tasks.{self.name}", self.name

    @property
    def sections(self) -> tuple[str, ...]:
        """The params sections the task receives: those of the keys the stage declares."""
        return tuple(dict.fromkeys(key.split(".")[0] for key in self.params))

    def task_arguments(self, params: Any) -> dict[str, Any]:
        """The task's params arguments, one per section, taken from the whole ``Params``."""
        return {section: getattr(params, section) for section in self.sections}

    @property
    def cmd(self) -> str:
        # `python -m` runs the workspace's own code (e.g. in a queued `dvc exp run` copy).
        return f"python -m catdog.cli stage {self.name}"

    @property
    def code(self) -> tuple[str, ...]:
        """The project files the stage's task runs (read from its imports, never listed by hand)."""
        return code_deps(f"tasks.{self.name}")

    @property
    def all_deps(self) -> tuple[str, ...]:
        return (*self.code, *self.deps)

    @property
    def all_outs(self) -> tuple[str, ...]:
        return (*self.outs, *self.metrics, *self.image_plots)


STAGES: tuple[Stage, ...] = (
    Stage(
        name="ingest",
        description="Decode and check every image of data.source; write data/raw and a report.",
        params=("data.source", "data.synthetic", "ingest"),
        # the source itself (the generator module or the user's folder/zip), from params.yaml
        deps=("${data.source}",),
        outs=(RAW_DIR, INGEST_REPORT, INGEST_SUMMARY),
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
        name="filters",
        description="VGG16 from the inside: a test photo's activations through its layers, and "
        "the inputs that most excite a few filters per layer, by gradient ascent.",
        deps=(RAW_DIR, MANIFEST, FEATURES_META, CONV_BASE_WEIGHTS),
        params=("data.image_size", "filters"),
        image_plots=(FILTERS_FIGURES,),
    ),
    Stage(
        name="classifier",
        description="The book's dense head trained on the features; best epoch by val loss.",
        # the images, conv base and augmentation are read in classifier.mode=in_model
        deps=(RAW_DIR, MANIFEST, FEATURES_DIR, CONV_BASE_WEIGHTS),
        params=("data.image_size", *AUGMENTATION, "classifier"),
        outs=(model_path("classifier"), history_path("classifier")),
        image_plots=(history_figure("classifier"),),
        model=Model("catdog-classifier", book_accuracy=0.975),
        logs_epochs=True,
    ),
    Stage(
        name="finetune",
        description="Conv base + trained head, block5 unfrozen, RMSprop at a low learning rate.",
        deps=(RAW_DIR, MANIFEST, FEATURES_META, CONV_BASE_WEIGHTS, model_path("classifier")),
        params=("data.image_size", *AUGMENTATION, "finetune"),
        outs=(model_path("finetune"), history_path("finetune")),
        image_plots=(history_figure("finetune"),),
        model=Model("catdog-finetuned", book_accuracy=0.985),
        logs_epochs=True,
    ),
    Stage(
        name="scratch",
        description="A convnet trained from scratch with augmentation: the book's (baseline) "
        "or chapter 9's mini-Xception.",
        deps=(RAW_DIR, MANIFEST),
        params=("data.image_size", *AUGMENTATION, "scratch"),
        outs=(model_path("scratch"), history_path("scratch")),
        image_plots=(history_figure("scratch"),),
        model=Model("catdog-scratch", book_accuracy=0.835),
        logs_epochs=True,
    ),
)
#: The stages that train a model, in pipeline order: the models evaluate compares.
MODELS: tuple[str, ...] = tuple(s.name for s in STAGES if s.model is not None)
STAGES += (
    Stage(
        name="evaluate",
        description="Every model on the same test set: metrics, confusion matrices, ROC curves, "
        "Grad-CAM heatmaps.",
        # the conv base: Grad-CAM explains a classifier on features through it
        deps=(RAW_DIR, MANIFEST, FEATURES_DIR, CONV_BASE_WEIGHTS, *(model_path(m) for m in MODELS)),
        params=("data.image_size", "evaluate"),
        outs=(PREDICTIONS_DIR, ROC_DIR, COMPARISON),
        metrics=(METRICS,),
        image_plots=(EVALUATE_FIGURES,),
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
REGISTERED_NAMES: dict[str, str] = {s.name: s.model.registered_name for s in STAGES if s.model}
BOOK_TEST_ACCURACY: dict[str, float] = {s.name: s.model.book_accuracy for s in STAGES if s.model}


def stage(name: str) -> Stage:
    """Return the stage called ``name``; ``KeyError`` names the known stages otherwise."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")


def upstream(name: str) -> tuple[str, ...]:
    """The stages whose outputs ``name`` reads, directly or not, in pipeline order."""
    wanted = {name}
    for s in reversed(STAGES[: STAGE_NAMES.index(name) + 1]):
        if s.name in wanted:
            for earlier in STAGES[: STAGE_NAMES.index(s.name)]:
                if any(_reads(dep, out) for dep in s.deps for out in earlier.all_outs):
                    wanted.add(earlier.name)
    return tuple(n for n in STAGE_NAMES if n in wanted and n != name)


def _reads(dep: str, out: str) -> bool:
    return dep == out or dep.startswith(f"{out}/") or out.startswith(f"{dep}/")


def lineage_params(name: str) -> tuple[str, ...]:
    """The params keys ``name`` and every stage upstream of it declare: all that its result
    depends on (so comparing two runs of a stage shows every param that differs)."""
    keys: list[str] = []
    for stage_name in (*upstream(name), name):
        keys += [k for k in stage(stage_name).params if k not in keys]
    return tuple(keys)


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
        # Every output is cached, so `dvc checkout` can restore whatever DVC removed before a
        # run that then failed (e.g. `dvc exp run -S` with a value the stage rejects).
        if s.outs:
            entry["outs"] = list(s.outs)
        if s.metrics:
            entry["metrics"] = list(s.metrics)
        if s.image_plots:
            entry["plots"] = list(s.image_plots)
        stages[s.name] = entry
    return {"stages": stages, "plots": _plot_defs()}
