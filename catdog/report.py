"""The model comparison tables: each metric with its 95% interval, the book's figures beside ours,
the paired comparisons of models scored on the same images, and Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from catdog.intervals import PROPORTIONS, SHOWN_AS_PERCENT, Pair, format_interval

__all__ = [
    "BOOK_TEST_ACCURACY",
    "comparison_table",
    "interval_table",
    "pairs_table",
    "to_markdown",
]

# Chapter 8's test accuracies on Kaggle's photos (2,000 training images at 180x180).
BOOK_TEST_ACCURACY: dict[str, float] = {"scratch": 0.835, "classifier": 0.975, "finetune": 0.985}
METRIC_NAMES: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


def comparison_table(
    metrics: Mapping[str, Mapping[str, float]],
    columns: Sequence[str] = METRIC_NAMES,
) -> pd.DataFrame:
    """One row per model with its test metrics and the book's test accuracy beside them."""
    frame = pd.DataFrame.from_dict({m: dict(v) for m, v in metrics.items()}, orient="index")
    frame = frame.reindex(columns=list(columns))
    frame["book_accuracy"] = [BOOK_TEST_ACCURACY.get(m, math.nan) for m in frame.index]
    frame.index.name = "model"
    return frame


def interval_table(
    metrics: Mapping[str, Mapping[str, float]], columns: Sequence[str] = METRIC_NAMES
) -> pd.DataFrame:
    """One row per model, each metric as ``75.0% [62.8, 84.2]`` (rates in percent, ROC AUC and
    log loss as numbers; ``n/a`` for a rate of nothing), and the book's test accuracy beside
    them."""
    nan = math.nan

    def cell(values: Mapping[str, float], name: str) -> str:
        low, high = values.get(f"{name}_ci_low", nan), values.get(f"{name}_ci_high", nan)
        if name in PROPORTIONS and not (math.isfinite(low) and math.isfinite(high)):
            return "n/a"  # a proportion of nothing: precision when no image was called a dog
        value = values.get(name, nan)
        return format_interval(value, low, high, percent=SHOWN_AS_PERCENT.get(name, False))

    rows = {
        model: {name: cell(values, name) for name in columns} for model, values in metrics.items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(columns))
    book = [BOOK_TEST_ACCURACY.get(m, nan) for m in frame.index]
    frame["book_accuracy"] = [f"{100 * b:.1f}%" if math.isfinite(b) else "n/a" for b in book]
    frame.index.name = "model"
    return frame


def pairs_table(pairs: Sequence[Pair]) -> pd.DataFrame:
    """One row per pair of models scored on the same images (``first − second``): the accuracy
    difference with its 95% interval, the discordant images each way, McNemar's exact p and the
    verdict."""
    rows = [
        {
            "pair": f"{p.first} − {p.second}",
            "accuracy difference (points)": f"{100 * p.difference:+.1f} "
            f"[{100 * p.ci_low:+.1f}, {100 * p.ci_high:+.1f}]",
            "only the first right": p.first_only,
            "only the second right": p.second_only,
            "McNemar p": f"{p.p_value:.3g}",
            "verdict": p.verdict(),
        }
        for p in pairs
    ]
    return pd.DataFrame(rows).set_index("pair") if rows else pd.DataFrame()


def to_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A frame as a GitHub Markdown table: floats to ``digits`` places, missing values as n/a."""
    cells = frame.astype(object).where(frame.notna(), None)  # NaN is missing, not "nan"
    # text stays text: tabulate would read "0.0352" as a number and round it to 0.035
    text_columns = [
        i + 1 for i, c in enumerate(frame.columns) if not pd.api.types.is_numeric_dtype(frame[c])
    ]
    return (
        cells.to_markdown(
            floatfmt=f".{digits}f", missingval="n/a", disable_numparse=text_columns or False
        )
        + "\n"
    )
