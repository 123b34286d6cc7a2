"""The pipeline's shared names: classes, splits, image suffixes and where stages write (the
models are the stage table's, :data:`catdog.stage_table.MODELS`).

A small module on purpose: every stage imports it, so it holds names only, never logic, and an
edit here is the one kind of code change that concerns every stage.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = ("cat", "dog")
#: Index of each label as a training target (dog is the positive class).
LABEL_INDEX: dict[str, int] = {label: index for index, label in enumerate(LABELS)}
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: The served model's config key for its decision threshold. MLflow logs a model's config as
#: params of the run logging it (evaluate's), so the key is the param evaluate already has.
THRESHOLD_KEY = "evaluate.threshold"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Files and folders that operating systems leave beside photos.
OS_DEBRIS = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
OS_DEBRIS_FOLDERS = frozenset({"__macosx"})

# Where each stage writes, relative to the workspace: the stage table and the tasks use these.
RAW_DIR = "data/raw"
INGEST_REPORT = "reports/ingest.json"
INGEST_SUMMARY = "reports/ingest.md"
#: A failed ingest's report: beside catdog's state, so the last good ingest's tracked report stays.
FAILED_INGEST_REPORT = ".catdog/ingest-failed.json"
FAILED_INGEST_SUMMARY = ".catdog/ingest-failed.md"
MANIFEST = "data/split/manifest.csv"
AUGMENTED_DIR = "data/augmented"
VIEWS_ARRAY = "views.npy"  # in AUGMENTED_DIR: every augmented view, uint8
VIEWS_INDEX = "views.csv"  # in AUGMENTED_DIR: path, label and view number of each row
AUGMENT_PREVIEW = "reports/figures/augment_preview.png"
FEATURES_DIR = "data/features"
FEATURES_META = "data/features/meta.json"
CONV_BASE_WEIGHTS = "models/conv_base.weights.h5"
METRICS = "reports/metrics.json"
PREDICTIONS_DIR = "reports/predictions"
ROC_DIR = "reports/roc"
COMPARISON = "reports/comparison.md"
EVALUATE_FIGURES = "reports/figures/evaluate"
FILTERS_FIGURES = "reports/figures/filters"


def model_path(name: str) -> str:
    return f"models/{name}.keras"


def history_path(name: str) -> str:
    return f"reports/history/{name}.csv"


def history_figure(name: str) -> str:
    return f"reports/figures/{name}_history.png"
