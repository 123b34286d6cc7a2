"""Evaluate's figures: each model's accuracy with its interval, confusion matrix, ROC curves and
calibration (reliability) curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.metrics import CALIBRATION_COLUMNS
from catdog.plots.figure import new_figure, save_png

__all__ = [
    "plot_accuracy_intervals",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_roc_curves",
]

#: An AUC alone, or with its 95% interval as ``(auc, low, high)``.
AucLabel = float | tuple[float, float, float]


def _check_curve_frame(name: str, frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raises ``ValueError`` unless ``frame`` is a DataFrame with ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"curve {name!r} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"curve {name!r} is missing columns {missing}")


def plot_confusion_matrix(
    cm: np.ndarray,
    path: Path,
    *,
    title: str,
    class_names: Sequence[str] = ("cat", "dog"),
) -> Path:
    """Plots a confusion matrix as an annotated heat map.

    Each cell shows its count and, below it, the share of its actual-class row.

    Args:
        cm: Square count matrix, rows = actual class, columns = predicted class
            (as returned by :func:`confusion_matrix`).
        path: Destination PNG file; parent directories are created.
        title: Figure title.
        class_names: Display names of the classes, in index order.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``cm`` is not square, does not match ``class_names``, or
            holds negative or non-finite values.
    """
    matrix = np.asarray(cm)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"cm must have shape ({k}, {k}) to match class_names, got {matrix.shape}")
    if matrix.dtype.kind not in "biuf" or not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("cm must contain finite, non-negative counts")

    fig = new_figure(4.8, 4.2)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(float(matrix.max()), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)

    row_totals = matrix.sum(axis=1)
    midpoint = image.norm.vmax / 2.0
    for i in range(k):
        for j in range(k):
            value = matrix[i, j]
            share = value / row_totals[i] if row_totals[i] else 0.0
            count_text = f"{int(value)}" if float(value).is_integer() else f"{value:.3g}"
            ax.text(
                j,
                i,
                f"{count_text}\n({share:.1%})",
                ha="center",
                va="center",
                fontsize=12,
                color="white" if value > midpoint else "black",
            )

    ax.set_xticks(range(k), labels=list(class_names))
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title(title)
    fig.tight_layout()
    return save_png(fig, path)


def plot_roc_curves(
    curves: Mapping[str, pd.DataFrame],
    path: Path,
    *,
    title: str = "ROC",
    aucs: Mapping[str, AucLabel] | None = None,
) -> Path:
    """Plots one ROC curve per model, plus the chance diagonal.

    Args:
        curves: Model name -> DataFrame from :func:`roc_curve`.
        path: Destination PNG file; parent directories are created.
        title: Figure title.
        aucs: Optional model name -> AUC, or ``(AUC, low, high)``, shown in the legend.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``curves`` is empty or a curve lacks ``fpr``/``tpr``.
    """
    if not curves:
        raise ValueError("curves must contain at least one model")
    for name, frame in curves.items():
        _check_curve_frame(name, frame, ("fpr", "tpr"))

    fig = new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    for name, frame in curves.items():
        label = str(name)
        if aucs is not None and name in aucs:
            label = f"{name} ({_auc_text(aucs[name])})"
        ax.plot(frame["fpr"], frame["tpr"], linewidth=1.8, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def _auc_text(auc: AucLabel) -> str:
    if isinstance(auc, tuple):
        value, low, high = auc
        if math.isfinite(low) and math.isfinite(high):
            return f"AUC = {value:.3f} [{low:.3f}, {high:.3f}]"
        auc = value
    return f"AUC = {auc:.3f}"


def plot_accuracy_intervals(
    results: Mapping[str, Mapping[str, float]],
    path: Path,
    images: int,
    *,
    book: Mapping[str, float] | None = None,
) -> Path:
    """Each model's test accuracy as a dot with its 95% interval as an error bar.

    Args:
        results: Model name -> metrics with ``accuracy``, ``accuracy_ci_low`` and
            ``accuracy_ci_high``.
        path: Destination PNG file; parent directories are created.
        images: The number of test images (the title says it: the bars' width follows from it).
        book: Optional model name -> the book's test accuracy, drawn as a grey mark.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not results:
        raise ValueError("results must contain at least one model")
    names = list(results)
    values = np.array([results[m]["accuracy"] for m in names])
    low = values - np.array([results[m]["accuracy_ci_low"] for m in names])
    high = np.array([results[m]["accuracy_ci_high"] for m in names]) - values
    fig = new_figure(6.0, 1.8 + 0.6 * len(names))
    ax = fig.add_subplot()
    rows = np.arange(len(names))
    ax.errorbar(values, rows, xerr=[low, high], fmt="o", capsize=4, label="ours, 95% interval")
    for row, value in enumerate(values):
        ax.annotate(
            f"{value:.1%}",
            (value, row),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    marks = [(row, book[m]) for row, m in enumerate(names) if book and m in book]
    if marks:
        ax.scatter(
            [b for _, b in marks],
            [r for r, _ in marks],
            marker="|",
            s=200,
            color="grey",
            label="the book's test accuracy",
        )
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(rows, labels=names)
    ax.set_xlim(0, 1)
    ax.set_ylim(len(names) - 0.4, -0.6)  # the first model on top
    ax.set_xlabel("test accuracy (dotted: chance)")
    ax.set_title(f"Test accuracy with 95% intervals ({images:,} test images)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return save_png(fig, path)


def plot_calibration(
    curves: Mapping[str, pd.DataFrame],
    path: Path,
    *,
    title: str = "Calibration",
) -> Path:
    """Plots reliability diagrams for one or more models.

    The top panel shows observed fraction of positives against mean predicted
    probability per bin, with the perfect-calibration diagonal; the bottom panel
    shows how many samples fell in each bin.

    Args:
        curves: Model name -> DataFrame from :func:`calibration_curve`.
        path: Destination PNG file; parent directories are created.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``curves`` is empty or a curve lacks the expected columns.
    """
    if not curves:
        raise ValueError("curves must contain at least one model")
    for name, frame in curves.items():
        _check_curve_frame(name, frame, CALIBRATION_COLUMNS)

    fig = new_figure(5.5, 6.5)
    ax, ax_counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for name, frame in curves.items():
        (line,) = ax.plot(
            frame["mean_prob"], frame["fraction_positive"], marker="o", markersize=4, label=name
        )
        ax_counts.plot(
            frame["bin_center"], frame["count"], marker="o", markersize=3, color=line.get_color()
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Fraction of positives (dog)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax_counts.set_xlabel("Mean predicted probability (dog)")
    ax_counts.set_ylabel("Count")
    ax_counts.set_ylim(bottom=0)
    ax_counts.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)
