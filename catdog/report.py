"""The model comparison table, with the book's figures beside ours, and Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = ["BOOK_TEST_ACCURACY", "comparison_table", "to_markdown"]

# Chapter 8's test accuracies on Kaggle's photos (2,000 training images at 180x180).
BOOK_TEST_ACCURACY: dict[str, float] = {"scratch": 0.835, "classifier": 0.975, "finetune": 0.985}


def comparison_table(
    metrics: Mapping[str, Mapping[str, float]],
    columns: Sequence[str] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
) -> pd.DataFrame:
    """One row per model with its test metrics and the book's test accuracy beside them."""
    frame = pd.DataFrame.from_dict({m: dict(v) for m, v in metrics.items()}, orient="index")
    frame = frame.reindex(columns=list(columns))
    frame["book_accuracy"] = [BOOK_TEST_ACCURACY.get(m, math.nan) for m in frame.index]
    frame.index.name = "model"
    return frame


def to_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A frame as a GitHub Markdown table: floats to ``digits`` places, missing values as n/a."""
    cells = frame.astype(object).where(frame.notna(), None)  # NaN is missing, not "nan"
    return cells.to_markdown(floatfmt=f".{digits}f", missingval="n/a") + "\n"
