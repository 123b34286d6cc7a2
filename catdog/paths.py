"""Where each stage writes, relative to the workspace: shared by the stage table and the tasks.

Kept apart from :mod:`catdog.pipeline` so that stages depend on these names only, not on how
``dvc.yaml`` is generated.
"""

from __future__ import annotations

MODELS: tuple[str, ...] = ("classifier", "finetune", "scratch")

# Where each stage writes: the stage table below and the tasks both use these names.
RAW_DIR = "data/raw"
INGEST_REPORT = "reports/ingest.json"
INGEST_SUMMARY = "reports/ingest.md"
MANIFEST = "data/split/manifest.csv"
AUGMENTED_DIR = "data/augmented"
AUGMENT_PREVIEW = "reports/figures/augment_preview.png"
FEATURES_DIR = "data/features"
FEATURES_META = "data/features/meta.json"
CONV_BASE_WEIGHTS = "models/conv_base.weights.h5"
METRICS = "reports/metrics.json"
PREDICTIONS_DIR = "reports/predictions"
ROC_DIR = "reports/roc"
COMPARISON = "reports/comparison.md"
EVALUATE_FIGURES = "reports/figures/evaluate"


def model_path(name: str) -> str:
    return f"models/{name}.keras"


def history_path(name: str) -> str:
    return f"reports/history/{name}.csv"


def history_figure(name: str) -> str:
    return f"reports/figures/{name}_history.png"
