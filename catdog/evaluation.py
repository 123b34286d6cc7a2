"""Evaluation metrics and plots for binary cat-vs-dog classifiers.

Everything here is pure numpy/pandas/matplotlib so it can be imported and tested
without TensorFlow, Prefect, MLflow or DVC.

Conventions:
    * The positive class is ``1`` (dog); the negative class is ``0`` (cat).
    * ``y_prob`` is the predicted probability of the positive class.
    * A sample is predicted positive when ``y_prob >= threshold``.
    * Label and probability arrays may be 1-D, or 2-D with a single column (the
      shape Keras' ``model.predict`` returns); both are flattened.

Plots are drawn on a :class:`matplotlib.figure.Figure` attached to its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (never ``pyplot``), so
they hold no global state and are safe to call from worker threads. PNGs are
written atomically: to a temporary file in the destination directory, then moved
into place with :func:`os.replace`.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "calibration_curve",
    "compute_metrics",
    "confusion_matrix",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_history",
    "plot_image_grid",
    "plot_roc_curves",
    "roc_curve",
]

#: Probabilities are clipped to ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` for the log loss.
LOG_LOSS_EPS = 1e-7

#: Resolution of every saved figure.
DPI = 100

_ROC_COLUMNS = ("fpr", "tpr", "threshold")
_CALIBRATION_COLUMNS = ("bin_center", "mean_prob", "fraction_positive", "count")


# --------------------------------------------------------------------------- validation


def _as_1d(values: object, name: str) -> np.ndarray:
    """Converts ``values`` to a 1-D numeric array.

    Args:
        values: Array-like input.
        name: Argument name used in error messages.

    Returns:
        The flattened array.

    Raises:
        ValueError: If the input is not numeric/boolean, is not 1-D (or a single
            column), or is empty.
    """
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (or a single column), got an array of shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric or boolean, got dtype {arr.dtype}")
    return arr


def _check_labels(values: object, name: str) -> np.ndarray:
    """Validates binary labels and returns them as an ``int64`` array.

    Args:
        values: Array-like of labels that must all be 0 or 1.
        name: Argument name used in error messages.

    Returns:
        The labels as a 1-D ``int64`` array.

    Raises:
        ValueError: If the labels are not a non-empty 1-D array of 0s and 1s.
    """
    arr = _as_1d(values, name)
    valid = np.isin(arr, (0, 1))
    if not valid.all():
        bad = np.unique(arr[~valid])[:5].tolist()
        raise ValueError(f"{name} must contain only 0 and 1, found {bad}")
    return arr.astype(np.int64)


def _check_probs(values: object, name: str = "y_prob") -> np.ndarray:
    """Validates probabilities and returns them as a ``float64`` array.

    Args:
        values: Array-like of probabilities of the positive class.
        name: Argument name used in error messages.

    Returns:
        The probabilities as a 1-D ``float64`` array.

    Raises:
        ValueError: If any value is non-finite or outside ``[0, 1]``.
    """
    arr = _as_1d(values, name).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, found {int((~np.isfinite(arr)).sum())} NaN/inf")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1], found values in [{arr.min():.6g}, {arr.max():.6g}]"
        )
    return arr


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raises ``ValueError`` unless ``a`` and ``b`` have the same length."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} differ in length: {len(a)} != {len(b)}")


def _check_pair(y_true: object, y_prob: object) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (labels, probabilities) pair."""
    labels = _check_labels(y_true, "y_true")
    probs = _check_probs(y_prob, "y_prob")
    _check_same_length(labels, probs, "y_true", "y_prob")
    return labels, probs


# ------------------------------------------------------------------------------ metrics


def _safe_div(num: float, den: float) -> float:
    """Returns ``num / den``, or 0.0 when ``den`` is zero."""
    return float(num) / float(den) if den else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Returns 1-based ranks of ``values``, tied values sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # Start index of each run of equal values, plus the end sentinel.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    # Positions start..end-1 (0-based) get ranks start+1..end; their mean is (start+end+1)/2.
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def _roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney U statistic with average ranks for ties.

    Returns:
        The AUC, or NaN when only one class is present.
    """
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(_average_ranks(probs)[labels == 1].sum())
    u_stat = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u_stat / (n_pos * n_neg)


def _log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy with probabilities clipped to avoid ``log(0)``."""
    p = np.clip(probs, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    losses = -(labels * np.log(p) + (1 - labels) * np.log1p(-p))
    return float(losses.mean())


def compute_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Computes the standard binary-classification metrics.

    The positive class is 1 (dog); a sample is predicted positive when
    ``y_prob >= threshold``.

    Args:
        y_true: Ground-truth labels, 0 or 1, shape ``(n,)`` or ``(n, 1)``.
        y_prob: Predicted probability of class 1, same length as ``y_true``.
        threshold: Decision threshold in ``[0, 1]``.

    Returns:
        A dict with exactly the keys ``accuracy``, ``precision``, ``recall``,
        ``f1``, ``roc_auc`` and ``log_loss``, all plain Python floats.
        ``precision``, ``recall`` and ``f1`` are 0.0 when undefined (no predicted
        or no actual positives); ``roc_auc`` is NaN when ``y_true`` holds only one
        class; ``log_loss`` clips probabilities to ``[1e-7, 1 - 1e-7]``.

    Raises:
        ValueError: If the inputs are empty, differ in length, contain labels
            other than 0/1, probabilities that are non-finite or outside
            ``[0, 1]``, or the threshold is not a finite number in ``[0, 1]``.
    """
    labels, probs = _check_pair(y_true, y_prob)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a number, got {threshold!r}") from exc
    if not (0.0 <= threshold <= 1.0):  # also rejects NaN
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")

    preds = (probs >= threshold).astype(np.int64)
    (tn, fp), (fn, tp) = confusion_matrix(labels, preds).tolist()
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {
        "accuracy": _safe_div(tp + tn, len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": float(_roc_auc(labels, probs)),
        "log_loss": _log_loss(labels, probs),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Builds the 2x2 confusion matrix of hard binary predictions.

    Args:
        y_true: Ground-truth labels, 0 or 1.
        y_pred: Predicted labels, 0 or 1, same length as ``y_true``.

    Returns:
        An ``int64`` array ``[[tn, fp], [fn, tp]]``: rows are the actual class
        (0, 1), columns the predicted class (0, 1).

    Raises:
        ValueError: If the inputs are empty, differ in length or are not 0/1.
    """
    labels = _check_labels(y_true, "y_true")
    preds = _check_labels(y_pred, "y_pred")
    _check_same_length(labels, preds, "y_true", "y_pred")
    return np.bincount(2 * labels + preds, minlength=4).reshape(2, 2).astype(np.int64)


def roc_curve(y_true: np.ndarray, y_prob: np.ndarray) -> pd.DataFrame:
    """Computes the ROC curve, one point per distinct score threshold.

    Row ``i`` gives the false- and true-positive rates of the rule
    ``y_prob >= threshold[i]``. The first row is ``threshold = inf`` (nothing
    predicted positive, the point (0, 0)); the last row is the smallest score
    (everything predicted positive, the point (1, 1)). Tied scores move the curve
    diagonally in one step, so the trapezoidal area under it equals the
    Mann-Whitney AUC of :func:`compute_metrics`.

    Args:
        y_true: Ground-truth labels, 0 or 1.
        y_prob: Predicted probability of class 1, same length as ``y_true``.

    Returns:
        A DataFrame with float columns ``fpr``, ``tpr`` and ``threshold``
        (thresholds decreasing, rates non-decreasing). If ``y_true`` holds only
        one class, the undefined rate column (``tpr`` without positives, ``fpr``
        without negatives) is NaN.

    Raises:
        ValueError: On invalid inputs (see :func:`compute_metrics`).
    """
    labels, probs = _check_pair(y_true, y_prob)
    order = np.argsort(-probs, kind="mergesort")
    sorted_probs = probs[order]
    sorted_labels = labels[order]
    # Last index of each run of equal scores: the cumulative counts there are
    # the counts for "predict positive when score >= that value".
    last = np.flatnonzero(np.r_[sorted_probs[1:] != sorted_probs[:-1], True])
    tps = np.cumsum(sorted_labels)[last]
    fps = (last + 1) - tps
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    tps = np.r_[0, tps].astype(np.float64)
    fps = np.r_[0, fps].astype(np.float64)
    return pd.DataFrame(
        {
            "fpr": fps / n_neg if n_neg else np.full_like(fps, np.nan),
            "tpr": tps / n_pos if n_pos else np.full_like(tps, np.nan),
            "threshold": np.r_[np.inf, sorted_probs[last]],
        },
        columns=list(_ROC_COLUMNS),
    )


def calibration_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Computes a reliability (calibration) curve over equal-width bins.

    ``[0, 1]`` is split into ``n_bins`` bins ``[k/n, (k+1)/n)``; the last bin
    also includes 1.0.

    Args:
        y_true: Ground-truth labels, 0 or 1.
        y_prob: Predicted probability of class 1, same length as ``y_true``.
        n_bins: Number of equal-width bins, at least 1.

    Returns:
        A DataFrame with one row per non-empty bin, in increasing order, and
        columns ``bin_center`` (midpoint of the bin), ``mean_prob`` (mean
        predicted probability in the bin), ``fraction_positive`` (observed
        fraction of class 1 in the bin) and ``count`` (int, samples in the bin).
        The counts sum to the number of samples.

    Raises:
        ValueError: On invalid inputs or if ``n_bins`` is not a positive integer.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    labels, probs = _check_pair(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_idx = np.searchsorted(edges[1:-1], probs, side="right")
    counts = np.bincount(bin_idx, minlength=n_bins)
    prob_sums = np.bincount(bin_idx, weights=probs, minlength=n_bins)
    pos_sums = np.bincount(bin_idx, weights=labels, minlength=n_bins)
    nonempty = counts > 0
    centers = (edges[:-1] + edges[1:]) / 2.0
    return pd.DataFrame(
        {
            "bin_center": centers[nonempty],
            "mean_prob": prob_sums[nonempty] / counts[nonempty],
            "fraction_positive": pos_sums[nonempty] / counts[nonempty],
            "count": counts[nonempty].astype(np.int64),
        },
        columns=list(_CALIBRATION_COLUMNS),
    ).reset_index(drop=True)


# ----------------------------------------------------------------------------- plotting


def _new_figure(width: float, height: float) -> Figure:
    """Creates a pyplot-free figure with its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: Path | str) -> Path:
    """Saves ``fig`` as a PNG at ``path`` atomically and returns the path.

    The image is written to a hidden temporary file in the destination
    directory (created if needed) and moved into place with :func:`os.replace`,
    so readers never see a half-written file. The temporary file is removed if
    saving fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it creates files with mode 0600, which would survive the
    # rename. os.open with 0o666 lets the process umask decide, like a plain open().
    tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=DPI)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


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

    fig = _new_figure(4.8, 4.2)
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
    return _save_png(fig, path)


def plot_roc_curves(
    curves: Mapping[str, pd.DataFrame],
    path: Path,
    *,
    title: str = "ROC",
    aucs: Mapping[str, float] | None = None,
) -> Path:
    """Plots one ROC curve per model, plus the chance diagonal.

    Args:
        curves: Model name -> DataFrame from :func:`roc_curve`.
        path: Destination PNG file; parent directories are created.
        title: Figure title.
        aucs: Optional model name -> AUC, shown in the legend.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``curves`` is empty or a curve lacks ``fpr``/``tpr``.
    """
    if not curves:
        raise ValueError("curves must contain at least one model")
    for name, frame in curves.items():
        _check_curve_frame(name, frame, ("fpr", "tpr"))

    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    for name, frame in curves.items():
        label = str(name)
        if aucs is not None and name in aucs:
            label = f"{name} (AUC = {aucs[name]:.3f})"
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
    return _save_png(fig, path)


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
        _check_curve_frame(name, frame, _CALIBRATION_COLUMNS)

    fig = _new_figure(5.5, 6.5)
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
    return _save_png(fig, path)


def _history_series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray | None:
    """Returns ``history[key]`` as a float array, or None when absent or empty."""
    if key not in history:
        return None
    values = np.asarray(history[key], dtype=np.float64).ravel()
    return values if values.size else None


def plot_history(
    history: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
) -> Path:
    """Plots Keras-style training curves: loss and accuracy, train vs validation.

    Epochs are numbered from 1. When ``val_loss`` is present, the epoch with the
    lowest validation loss is marked on both panels. The accuracy metric is
    looked up as ``accuracy``, ``acc`` or ``binary_accuracy`` (first found);
    a panel whose metric is missing says so instead of plotting.

    Args:
        history: Metric name -> per-epoch values, e.g. ``History.history``
            with keys ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
        path: Destination PNG file; parent directories are created.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``history`` holds neither a loss nor an accuracy series.
    """
    acc_key = next(
        (
            k
            for k in ("accuracy", "acc", "binary_accuracy")
            if _history_series(history, k) is not None
            or _history_series(history, f"val_{k}") is not None
        ),
        "accuracy",
    )
    panels = (("loss", "Loss"), (acc_key, "Accuracy"))
    if all(
        _history_series(history, key) is None and _history_series(history, f"val_{key}") is None
        for key, _ in panels
    ):
        raise ValueError(f"history has no loss or accuracy series; keys present: {sorted(history)}")

    best_epoch: int | None = None
    val_loss = _history_series(history, "val_loss")
    if val_loss is not None and np.isfinite(val_loss).any():
        best_epoch = int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan))) + 1

    fig = _new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, panels, strict=True):
        plotted = False
        for series_key, series_label, style in (
            (key, "train", "-"),
            (f"val_{key}", "validation", "--"),
        ):
            values = _history_series(history, series_key)
            if values is None:
                continue
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, style, marker="o", markersize=3, label=series_label)
            plotted = True
        if not plotted:
            ax.text(
                0.5,
                0.5,
                f"no {label.lower()} recorded",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            if best_epoch is not None:
                ax.axvline(
                    best_epoch,
                    color="tab:red",
                    linestyle=":",
                    linewidth=1.2,
                    label=f"best val_loss (epoch {best_epoch})",
                )
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel("Epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_image_grid(
    images: np.ndarray,
    path: Path,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> Path:
    """Plots a grid of RGB thumbnails, optionally with a small caption each.

    Args:
        images: ``uint8`` array of shape ``(N, H, W, 3)``, N >= 1.
        path: Destination PNG file; parent directories are created.
        titles: Optional captions, one per image.
        ncols: Maximum number of columns (fewer are used when N < ncols).
        title: Optional figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``images`` is not a non-empty ``uint8`` ``(N, H, W, 3)``
            array, ``titles`` has the wrong length, or ``ncols`` < 1.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W, 3) with N >= 1, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    n_images, height, width = arr.shape[:3]
    if titles is not None and len(titles) != n_images:
        raise ValueError(f"titles has {len(titles)} entries for {n_images} images")

    cols = min(int(ncols), n_images)
    rows = math.ceil(n_images / cols)
    # Explicit layout in inches: the longer image side is THUMB_IN, each cell has
    # room for a caption above the image, and GAP_IN separates the cells.
    thumb_in, gap_in = 1.6, 0.08
    scale = thumb_in / max(height, width)
    img_w, img_h = width * scale, height * scale
    caption_h = 0.22 if titles is not None else 0.0
    title_h = 0.45 if title else 0.0
    fig_w = cols * (img_w + gap_in) + gap_in
    fig_h = title_h + rows * (caption_h + img_h + gap_in) + gap_in
    fig = _new_figure(fig_w, fig_h)
    for idx in range(n_images):
        row, col = divmod(idx, cols)
        left = gap_in + col * (img_w + gap_in)
        top = fig_h - title_h - gap_in - row * (caption_h + img_h + gap_in) - caption_h
        ax = fig.add_axes((left / fig_w, (top - img_h) / fig_h, img_w / fig_w, img_h / fig_h))
        ax.imshow(arr[idx], interpolation="antialiased")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[idx]), fontsize=7, pad=2)
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.1 / fig_h, va="top")
    return _save_png(fig, path)
