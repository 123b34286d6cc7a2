"""Tests for catdog.metrics: metrics checked against hand-computed values and brute-force
oracles."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest

from catdog.metrics import calibration_curve, compute_metrics, confusion_matrix, roc_curve

METRIC_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}


# ----------------------------------------------------------------------------- helpers


def pairwise_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Brute-force AUC: P(score_pos > score_neg) + 0.5 * P(tie) over all pairs."""
    pos = y_prob[y_true == 1]
    neg = y_prob[y_true == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def trapezoid_area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under the polyline (x, y)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def random_scores(seed: int, n: int = 200, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative scores rounded so that many ties occur."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.4 + 0.2 * y, 0.25), 0.0, 1.0).round(decimals)
    return y, p


# ----------------------------------------------------------------------- compute_metrics


def test_metrics_hand_computed_spec_example() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_prob = np.array([0.1, 0.6, 0.4, 0.9])
    m = compute_metrics(y_true, y_prob)
    # preds at 0.5: [0, 1, 0, 1] -> TN=1, FP=1, FN=1, TP=1
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    # positive scores {0.4, 0.9} beat negatives {0.1, 0.6} in 3 of 4 pairs
    assert m["roc_auc"] == pytest.approx(0.75)
    expected_ll = -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.9)) / 4
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_metrics_hand_computed_precision_differs_from_recall() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 1])
    y_prob = np.array([0.1, 0.55, 0.7, 0.3, 0.8, 0.9, 0.45])
    m = compute_metrics(y_true, y_prob)
    # preds [0,1,1,0,1,1,0] -> TN=2, FP=2, FN=1, TP=2
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # positives 0.8 and 0.9 beat all 4 negatives, 0.45 beats 0.1 and 0.3 -> 10/12
    assert m["roc_auc"] == pytest.approx(10 / 12)
    per_sample = [0.9, 0.45, 0.3, 0.7, 0.8, 0.9, 0.45]  # probability of the true class
    assert m["log_loss"] == pytest.approx(-sum(math.log(q) for q in per_sample) / 7)


def test_metrics_keys_and_plain_float_types() -> None:
    m = compute_metrics(np.array([0, 1, 1]), np.array([0.2, 0.7, 0.4], dtype=np.float32))
    assert set(m) == METRIC_KEYS
    for key, value in m.items():
        assert type(value) is float, key


def test_perfect_classifier() -> None:
    y_true = np.array([0, 0, 0, 1, 1])
    y_prob = np.array([0.0, 0.1, 0.2, 0.8, 1.0])
    m = compute_metrics(y_true, y_prob)
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == 1.0
    assert m["roc_auc"] == 1.0
    expected_ll = -(2 * math.log(1 - 1e-7) + math.log(0.9) + 2 * math.log(0.8)) / 5
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_inverted_classifier() -> None:
    y_true = np.array([0, 0, 0, 1, 1])
    y_prob = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    m = compute_metrics(y_true, y_prob)
    assert m["roc_auc"] == 0.0
    assert m["accuracy"] == 0.0
    # three false positives and no true positives: precision 0, recall 0, f1 0
    assert m["precision"] == 0.0
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0


def test_auc_with_ties_hand_computed() -> None:
    y_true = np.array([0, 1, 0, 1])
    y_prob = np.array([0.5, 0.5, 0.2, 0.8])
    # pairs: (0.5 vs 0.5) tie = 0.5, (0.5 > 0.2) = 1, (0.8 > 0.5) = 1, (0.8 > 0.2) = 1
    assert compute_metrics(y_true, y_prob)["roc_auc"] == pytest.approx(3.5 / 4)


def test_auc_all_scores_tied_is_half() -> None:
    y_true = np.array([0, 1, 1, 0, 1])
    assert compute_metrics(y_true, np.full(5, 0.3))["roc_auc"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_pairwise_bruteforce(seed: int) -> None:
    y_true, y_prob = random_scores(seed, n=150, decimals=1)
    assert compute_metrics(y_true, y_prob)["roc_auc"] == pytest.approx(
        pairwise_auc(y_true, y_prob), abs=1e-12
    )


@pytest.mark.parametrize("seed", [11, 12])
def test_auc_is_the_correctly_rounded_mann_whitney_ratio(seed: int) -> None:
    y_true, y_prob = random_scores(seed, n=97, decimals=2)
    pos, neg = y_prob[y_true == 1], y_prob[y_true == 0]
    twice_wins = sum(2 if p > n else 1 if p == n else 0 for p in pos for n in neg)
    exact = float(Fraction(twice_wins, 2 * len(pos) * len(neg)))
    assert compute_metrics(y_true, y_prob)["roc_auc"] == exact  # exact, not approx


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_emits_no_warning(label: int) -> None:
    y_true = np.full(4, label)
    y_prob = np.array([0.2, 0.4, 0.4, 0.8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(y_true, y_prob)
        roc = roc_curve(y_true, y_prob)
        confusion_matrix(y_true, (y_prob >= 0.5).astype(int))
        calibration_curve(y_true, y_prob)
    assert math.isnan(m["roc_auc"])
    undefined, defined = ("fpr", "tpr") if label == 1 else ("tpr", "fpr")
    assert roc[undefined].isna().all()
    np.testing.assert_array_equal(roc[defined], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_array_equal(roc["threshold"], [np.inf, 0.8, 0.4, 0.2])


def test_importing_the_module_does_not_import_sklearn() -> None:
    # catdog.plots.evaluation imports CALIBRATION_COLUMNS from here and must stay light.
    code = "import sys, catdog.metrics\nassert 'sklearn' not in sys.modules\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_auc_is_nan_and_undefined_rates_are_zero(label: int) -> None:
    y_true = np.full(4, label)
    y_prob = np.array([0.2, 0.4, 0.6, 0.8])
    m = compute_metrics(y_true, y_prob)
    assert math.isnan(m["roc_auc"])
    assert m["accuracy"] == pytest.approx(0.5)
    if label == 0:
        # no actual positives: recall undefined -> 0; 2 false positives -> precision 0
        assert m["recall"] == 0.0
        assert m["precision"] == 0.0
    else:
        # all positives, half found: precision 1, recall 0.5
        assert m["precision"] == 1.0
        assert m["recall"] == pytest.approx(0.5)
    assert math.isfinite(m["log_loss"])


def test_no_predicted_positives_gives_zero_precision_and_f1() -> None:
    m = compute_metrics(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3]))
    assert m["precision"] == 0.0
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["roc_auc"] == 1.0


def test_threshold_changes_predictions() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_prob = np.array([0.1, 0.6, 0.4, 0.9])
    low = compute_metrics(y_true, y_prob, threshold=0.3)  # preds [0, 1, 1, 1]
    high = compute_metrics(y_true, y_prob, threshold=0.7)  # preds [0, 0, 0, 1]
    assert low["accuracy"] == pytest.approx(0.75)
    assert low["precision"] == pytest.approx(2 / 3)
    assert low["recall"] == 1.0
    assert high["accuracy"] == pytest.approx(0.75)
    assert high["precision"] == 1.0
    assert high["recall"] == pytest.approx(0.5)
    # threshold-free metrics do not move
    assert low["roc_auc"] == high["roc_auc"] == pytest.approx(0.75)
    assert low["log_loss"] == pytest.approx(high["log_loss"])


def test_score_equal_to_threshold_is_positive() -> None:
    m = compute_metrics(np.array([0, 1]), np.array([0.2, 0.5]), threshold=0.5)
    assert m["recall"] == 1.0


def test_log_loss_clips_extreme_probabilities() -> None:
    m = compute_metrics(np.array([1, 0]), np.array([0.0, 1.0]))
    assert math.isfinite(m["log_loss"])
    assert m["log_loss"] == pytest.approx(-math.log(1e-7))


def test_column_vectors_are_accepted() -> None:
    y_true = np.array([[0], [0], [1], [1]])
    y_prob = np.array([[0.1], [0.6], [0.4], [0.9]])
    assert compute_metrics(y_true, y_prob) == compute_metrics(y_true.ravel(), y_prob.ravel())


def test_boolean_labels_are_accepted() -> None:
    m = compute_metrics(np.array([False, True]), np.array([0.3, 0.8]))
    assert m["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("y_true", "y_prob", "message"),
    [
        ([0, 1, 1], [0.2, 0.8], "length"),
        ([], [], "empty"),
        ([0, 2], [0.2, 0.8], "0 and 1"),
        ([0, 0.5], [0.2, 0.8], "0 and 1"),
        ([0, -1], [0.2, 0.8], "0 and 1"),
        ([0, float("nan")], [0.2, 0.8], "0 and 1"),
        (["cat", "dog"], [0.2, 0.8], "numeric"),
        ([0, 1], [0.2, float("nan")], "finite"),
        ([0, 1], [0.2, float("inf")], "finite"),
        ([0, 1], [0.2, 1.1], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.8], r"\[0, 1\]"),
        ([[0, 1], [1, 0]], [[0.2, 0.8], [0.3, 0.7]], "1-D"),
    ],
)
def test_compute_metrics_rejects_invalid_input(y_true, y_prob, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(np.asarray(y_true), np.asarray(y_prob))


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "high"])
def test_compute_metrics_rejects_invalid_threshold(threshold) -> None:
    with pytest.raises(ValueError, match="threshold"):
        compute_metrics(np.array([0, 1]), np.array([0.2, 0.8]), threshold=threshold)


# ---------------------------------------------------------------------- confusion_matrix


def test_confusion_matrix_layout() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 1, 1, 0, 1, 1, 1])
    cm = confusion_matrix(y_true, y_pred)
    # rows = actual, cols = predicted: [[TN, FP], [FN, TP]]
    np.testing.assert_array_equal(cm, [[1, 2], [1, 3]])
    assert cm.shape == (2, 2)
    assert np.issubdtype(cm.dtype, np.integer)


def test_confusion_matrix_missing_class_still_2x2() -> None:
    cm = confusion_matrix(np.array([1, 1, 1]), np.array([1, 0, 1]))
    np.testing.assert_array_equal(cm, [[0, 0], [1, 2]])


def test_confusion_matrix_consistent_with_metrics() -> None:
    y_true, y_prob = random_scores(3, n=100)
    cm = confusion_matrix(y_true, (y_prob >= 0.5).astype(int))
    m = compute_metrics(y_true, y_prob)
    assert cm.sum() == len(y_true)
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert m["precision"] == pytest.approx(cm[1, 1] / cm[:, 1].sum())
    assert m["recall"] == pytest.approx(cm[1, 1] / cm[1, :].sum())


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [([0, 1], [0]), ([0, 1], [0, 2]), ([0, 3], [0, 1]), ([], [])],
)
def test_confusion_matrix_rejects_invalid_input(y_true, y_pred) -> None:
    with pytest.raises(ValueError):
        confusion_matrix(np.asarray(y_true), np.asarray(y_pred))


# ----------------------------------------------------------------------------- roc_curve


def test_roc_curve_hand_computed_with_ties() -> None:
    y_true = np.array([0, 1, 0, 1])
    y_prob = np.array([0.5, 0.5, 0.2, 0.8])
    roc = roc_curve(y_true, y_prob)
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    # thresholds inf, 0.8, 0.5 (tie of one pos and one neg: one diagonal step), 0.2
    np.testing.assert_allclose(roc["fpr"], [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(roc["tpr"], [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(roc["threshold"], [np.inf, 0.8, 0.5, 0.2])


def test_roc_curve_endpoints_and_monotonicity() -> None:
    y_true, y_prob = random_scores(4, n=300, decimals=2)
    roc = roc_curve(y_true, y_prob)
    assert (roc.loc[0, "fpr"], roc.loc[0, "tpr"]) == (0.0, 0.0)
    assert (roc["fpr"].iloc[-1], roc["tpr"].iloc[-1]) == (1.0, 1.0)
    assert np.isinf(roc.loc[0, "threshold"])
    assert roc["threshold"].iloc[-1] == y_prob.min()
    assert (np.diff(roc["fpr"]) >= 0).all()
    assert (np.diff(roc["tpr"]) >= 0).all()
    assert (np.diff(roc["threshold"]) < 0).all()
    # one point per distinct score, plus the (0, 0) start
    assert len(roc) == len(np.unique(y_prob)) + 1


def test_roc_curve_points_match_bruteforce_thresholding() -> None:
    y_true, y_prob = random_scores(5, n=120, decimals=1)
    roc = roc_curve(y_true, y_prob)
    n_pos = (y_true == 1).sum()
    n_neg = (y_true == 0).sum()
    for _, row in roc.iloc[1:].iterrows():
        pred = y_prob >= row["threshold"]
        assert row["tpr"] == pytest.approx((pred & (y_true == 1)).sum() / n_pos)
        assert row["fpr"] == pytest.approx((pred & (y_true == 0)).sum() / n_neg)


@pytest.mark.parametrize("seed", [6, 7, 8, 9])
def test_auc_equals_trapezoidal_area_under_roc_curve(seed: int) -> None:
    y_true, y_prob = random_scores(seed, n=250, decimals=1)  # heavy ties
    roc = roc_curve(y_true, y_prob)
    auc = compute_metrics(y_true, y_prob)["roc_auc"]
    assert auc == pytest.approx(trapezoid_area(roc["fpr"], roc["tpr"]), abs=1e-12)


def test_roc_curve_all_tied_is_the_diagonal() -> None:
    roc = roc_curve(np.array([0, 1, 0, 1, 1]), np.full(5, 0.7))
    np.testing.assert_allclose(roc["fpr"], [0.0, 1.0])
    np.testing.assert_allclose(roc["tpr"], [0.0, 1.0])


def test_roc_curve_single_class_has_nan_rate() -> None:
    roc = roc_curve(np.zeros(3, dtype=int), np.array([0.1, 0.5, 0.9]))
    assert roc["tpr"].isna().all()
    np.testing.assert_allclose(roc["fpr"], [0.0, 1 / 3, 2 / 3, 1.0])


def test_roc_curve_rejects_invalid_input() -> None:
    with pytest.raises(ValueError, match="length"):
        roc_curve(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="finite"):
        roc_curve(np.array([0, 1]), np.array([0.5, np.nan]))


# --------------------------------------------------------------------- calibration_curve


def test_calibration_curve_hand_computed() -> None:
    y_true = np.array([0, 1, 0, 1, 1, 0])
    y_prob = np.array([0.05, 0.15, 0.12, 0.95, 1.0, 0.0])
    cal = calibration_curve(y_true, y_prob, n_bins=10)
    assert list(cal.columns) == ["bin_center", "mean_prob", "fraction_positive", "count"]
    # bins [0, .1): {0.05, 0.0}; [.1, .2): {0.15, 0.12}; [.9, 1]: {0.95, 1.0}
    np.testing.assert_allclose(cal["bin_center"], [0.05, 0.15, 0.95])
    np.testing.assert_allclose(cal["mean_prob"], [0.025, 0.135, 0.975])
    np.testing.assert_allclose(cal["fraction_positive"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(cal["count"], [2, 2, 2])
    assert np.issubdtype(cal["count"].dtype, np.integer)


def test_calibration_bin_edges_are_left_closed() -> None:
    cal = calibration_curve(np.array([0, 1, 1]), np.array([0.49, 0.5, 1.0]), n_bins=2)
    np.testing.assert_allclose(cal["bin_center"], [0.25, 0.75])
    np.testing.assert_array_equal(cal["count"], [1, 2])


@pytest.mark.parametrize("n_bins", [1, 5, 10, 37])
def test_calibration_counts_sum_to_n_and_bins_nonempty(n_bins: int) -> None:
    y_true, y_prob = random_scores(10, n=333, decimals=3)
    cal = calibration_curve(y_true, y_prob, n_bins=n_bins)
    assert cal["count"].sum() == len(y_true)
    assert (cal["count"] > 0).all()
    assert len(cal) <= n_bins
    assert (np.diff(cal["bin_center"]) > 0).all()
    # every bin's mean probability lies inside that bin
    half_width = 0.5 / n_bins
    assert (cal["mean_prob"] >= cal["bin_center"] - half_width - 1e-12).all()
    assert (cal["mean_prob"] <= cal["bin_center"] + half_width + 1e-12).all()
    # the count-weighted fraction of positives recovers the overall positive rate
    weighted = (cal["fraction_positive"] * cal["count"]).sum() / cal["count"].sum()
    assert weighted == pytest.approx(y_true.mean())


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_calibration_rejects_bad_n_bins(n_bins) -> None:
    with pytest.raises(ValueError, match="n_bins"):
        calibration_curve(np.array([0, 1]), np.array([0.2, 0.8]), n_bins=n_bins)
