"""Human-readable summaries: the model comparison table as Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["BOOK_TEST_ACCURACY", "comparison_table", "issues_markdown", "to_markdown"]

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
    """Render a frame as a GitHub Markdown table (no optional dependency needed)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([str(index), *(cell(v) for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def issues_markdown(report: Mapping[str, Any]) -> str:
    """The ingest report for people: counts, then each rejected or skipped file and why."""
    counts = report["counts"]
    per_class = ", ".join(f"{k} {v}" for k, v in counts["per_class"].items())
    lines = [
        f"# Ingest of {report['source']} (layout: {report.get('layout', 'n/a')})",
        "",
        f"accepted {counts['accepted']} ({per_class}), rejected {counts['rejected']}, "
        f"skipped {counts['skipped']}",
        "",
    ]
    rows = [
        {"status": status, "path": row["path"], "reason": row["reason"]}
        for status in ("rejected", "skipped")
        for row in report[status]
    ]
    if rows:
        frame = pd.DataFrame(rows).set_index("status")
        lines.append(to_markdown(frame))
    return "\n".join(lines) + "\n"
