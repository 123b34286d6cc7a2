"""Test-set metrics and curves of binary cat-vs-dog classifiers.

The values come from scikit-learn's metrics (:mod:`sklearn.metrics`); the input validation, the
one-class handling and the calibration bins are ours. Where scikit-learn's own arithmetic would
change the last bits of a value, it is combined exactly instead: ``f1`` is the harmonic mean of
scikit-learn's precision and recall, ``roc_auc`` the exact area under its per-threshold counts,
and ``log_loss`` stays in numpy (see :func:`_log_loss`).

Conventions:
    * The positive class is ``1`` (dog); the negative class is ``0`` (cat).
    * ``y_prob`` is the predicted probability of the positive class.
    * A sample is predicted positive when ``y_prob >= threshold``.
    * Label and probability arrays may be 1-D, or 2-D with a single column (the
      shape Keras' ``model.predict`` returns); both are flattened.

scikit-learn is imported inside the functions that use it, not at module top:
:mod:`catdog.plots.evaluation` imports :data:`CALIBRATION_COLUMNS` from here and must stay light.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "CALIBRATION_COLUMNS",
    "ROC_COLUMNS",
    "calibration_curve",
    "compute_metrics",
    "confusion_matrix",
    "roc_curve",
]

#: Probabilities are clipped to ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` for the log loss.
LOG_LOSS_EPS = 1e-7

ROC_COLUMNS = ("fpr", "tpr", "threshold")
CALIBRATION_COLUMNS = ("bin_center", "mean_prob", "fraction_positive", "count")


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


def _check_threshold(threshold: object) -> float:
    """Returns ``threshold`` as a float, raising ``ValueError`` unless it is a number in [0, 1]."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a number, got {threshold!r}") from exc
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"threshold must lie in [0, 1], got {value}")
    return value


def _roc_counts(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive counts per distinct score, from (0, 0) at ``threshold = inf``.

    Returns:
        ``(fps, tps, thresholds)``: float arrays of exact integer counts of the rule
        ``probs >= thresholds[i]``, thresholds decreasing, ``thresholds[0] = inf``.
    """
    from sklearn.metrics import confusion_matrix_at_thresholds

    _, fps, _, tps, thresholds = confusion_matrix_at_thresholds(labels, probs)
    return np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thresholds]


def _roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC as the exact area under scikit-learn's per-threshold counts.

    Ties move the curve diagonally, so this is the Mann-Whitney U statistic with average ranks
    over ``n_pos * n_neg``. The trapezoids are summed in integer counts (exact in float64) and
    divided once, so the result is the correctly rounded ratio; ``roc_auc_score`` sums rounded
    rates and can differ from it in the last bits.

    Returns:
        The AUC, or NaN when only one class is present.
    """
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    fps, tps, _ = _roc_counts(labels, probs)
    twice_u = float(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))
    return twice_u / (2.0 * n_pos * n_neg)


def _log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy with probabilities clipped to avoid ``log(0)``.

    Not ``sklearn.metrics.log_loss``: it takes ``log(1 - p)`` where this takes ``log1p(-p)``,
    which changes the last bits of the mean and loses precision for confident negatives.
    """
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
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels, probs = _check_pair(y_true, y_prob)
    threshold = _check_threshold(threshold)
    preds = (probs >= threshold).astype(np.int64)
    precision, recall, _, _ = precision_recall_fscore_support(
        labels, preds, average="binary", pos_label=1, zero_division=0
    )
    precision, recall = float(precision), float(recall)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "precision": precision,
        "recall": recall,
        # scikit-learn's f1 is 2tp / (2tp + fp + fn): the same number, rounded differently.
        "f1": _safe_div(2 * precision * recall, precision + recall),
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
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    labels = _check_labels(y_true, "y_true")
    preds = _check_labels(y_pred, "y_pred")
    _check_same_length(labels, preds, "y_true", "y_pred")
    return sk_confusion_matrix(labels, preds, labels=[0, 1]).astype(np.int64)


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
    from sklearn.metrics import roc_curve as sk_roc_curve

    labels, probs = _check_pair(y_true, y_prob)
    if labels.min() != labels.max():
        fpr, tpr, thresholds = sk_roc_curve(labels, probs, drop_intermediate=False)
    else:
        # sklearn's roc_curve warns here (UndefinedMetricWarning); same values, no warning.
        fps, tps, thresholds = _roc_counts(labels, probs)
        fpr = fps / fps[-1] if fps[-1] else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] else np.full_like(tps, np.nan)
    return pd.DataFrame(
        {"fpr": fpr, "tpr": tpr, "threshold": thresholds}, columns=list(ROC_COLUMNS)
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
    # numpy, not sklearn's calibration_curve: it gives no counts/centres, bins edges side="left".
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
        columns=list(CALIBRATION_COLUMNS),
    ).reset_index(drop=True)
