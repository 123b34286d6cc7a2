"""The model comparison tables: each metric with its 95% interval, the book's figures beside ours,
the paired comparisons of models scored on the same images, and Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from catdog.intervals import (
    PROPORTIONS,
    SHOWN_AS_PERCENT,
    Pair,
    format_interval,
    noise_sentence,
    paired_comparison,
)
from catdog.stage_table import BOOK_TEST_ACCURACY

__all__ = [
    "BOOK_TEST_ACCURACY",
    "compare_pairs",
    "comparison_markdown",
    "flat_metrics",
    "interval_table",
    "pair_key",
    "pair_metrics",
    "pairs_table",
    "to_markdown",
]

METRIC_NAMES: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


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


def compare_pairs(
    probabilities: Mapping[str, np.ndarray], y_true: np.ndarray, threshold: float
) -> list[Pair]:
    """Every pair of models, in stage order, compared on the images each got right."""
    right = {
        name: (prob >= threshold).astype(int) == y_true for name, prob in probabilities.items()
    }
    return [paired_comparison(a, right[a], b, right[b]) for a, b in combinations(right, 2)]


def pair_key(pair: Pair) -> str:
    """``classifier_vs_finetune``: the pair's name in metrics.json and MLflow."""
    return f"{pair.first}_vs_{pair.second}"


def pair_metrics(pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    """The pairs as metrics.json holds them: numbers only, keyed by :func:`pair_key`."""
    return {
        pair_key(p): {k: v for k, v in p.as_dict().items() if not isinstance(v, str)} for p in pairs
    }


def flat_metrics(
    results: Mapping[str, Mapping[str, float]], pairs: Sequence[Pair], images: int
) -> dict[str, float]:
    """Evaluate's MLflow metrics: ``scratch_accuracy``, ``scratch_accuracy_ci_low``...,
    ``classifier_vs_scratch_accuracy_diff`` (with ``_ci_low``/``_ci_high``), ``..._mcnemar_p``
    and ``test_images``: MLflow's compare view shows them side by side."""
    out = {f"{m}_{k}": v for m, values in results.items() for k, v in values.items()}
    for p in pairs:
        key = pair_key(p)
        out[f"{key}_accuracy_diff"] = p.difference
        out[f"{key}_accuracy_diff_ci_low"] = p.ci_low
        out[f"{key}_accuracy_diff_ci_high"] = p.ci_high
        out[f"{key}_mcnemar_p"] = p.p_value
    out["test_images"] = float(images)
    return out


def comparison_markdown(
    results: Mapping[str, Mapping[str, float]],
    pairs: Sequence[Pair],
    weights: Mapping[str, Any],
    images: int,
    *,
    resamples: int,
    seed: int,
) -> str:
    """``reports/comparison.md``: each metric with its interval beside the book's figures, the
    test set's noise in words, the paired comparisons, and untrained weights said.

    Args:
        results: Each model's metrics with their ``_ci_low``/``_ci_high`` bounds.
        pairs: The models compared on the same images.
        weights: The VGG16 weights the features were made with (``label``, ``pretrained``).
        images: The number of test images.
        resamples: The bootstrap's resamples, and ``seed`` its seed, as the intervals used.
    """
    untrained = (
        "**Untrained VGG16 weights**: the classifier and finetune rows measure a random conv "
        "base, not transfer learning; see features.weights.\n\n"
    )
    return (
        f"# Test-set comparison ({images} images, VGG16 weights: {weights['label']})\n\n"
        f"{noise_sentence(images, paired=True)}.\n\n"
        + to_markdown(interval_table(results))
        + "\n95% intervals: Wilson's for accuracy, precision and recall; a bootstrap of the test "
        f"images within each class ({resamples:,} resamples, seed {seed}) for "
        "F1, ROC AUC and log loss. book_accuracy: chapter 8's test accuracy on Kaggle's photos, "
        "for reference.\n\n"
        + (untrained if not weights["pretrained"] else "")
        + f"## Paired comparisons on the same {images} images\n\n"
        "The difference in accuracy comes from the images one model got right and the other "
        "wrong; McNemar's exact test (two-sided) asks whether that split is more than luck, and "
        "the interval is Newcombe's for paired proportions.\n\n" + to_markdown(pairs_table(pairs))
    )
