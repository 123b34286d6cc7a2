"""Intervals, paired tests and the test set's noise, against hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from catdog.intervals import (
    bootstrap_intervals,
    format_interval,
    mcnemar_exact,
    metric_intervals,
    noise_margin,
    noise_sentence,
    paired_comparison,
    wilson_interval,
)
from catdog.metrics import compute_metrics


@pytest.mark.parametrize(
    ("successes", "total", "low", "high"),
    [
        (45, 60, 0.628, 0.842),  # 75% of 60: the default pipeline's test split
        (180, 200, 0.851, 0.934),  # 90% of 200
        (0, 10, 0.0, 0.278),  # at the edge the interval does not collapse to a point
        (10, 10, 0.722, 1.0),
    ],
)
def test_wilson_interval_of_hand_worked_cases(successes, total, low, high):
    got = wilson_interval(successes, total)
    assert got == pytest.approx((low, high), abs=5e-4)


def test_wilson_interval_refuses_impossible_counts_and_says_nothing_of_nothing():
    with pytest.raises(ValueError, match="successes <= total"):
        wilson_interval(7, 6)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_mcnemar_exact_on_discordant_images():
    # 12 images only A got right, 3 only B: P(X >= 12), X ~ Bin(15, 1/2) = 576 / 32768
    assert mcnemar_exact(12, 3, "greater") == pytest.approx(0.0176, abs=5e-5)
    assert mcnemar_exact(12, 3, "greater") == 576 / 2**15
    assert mcnemar_exact(12, 3) == pytest.approx(2 * 576 / 2**15)
    assert mcnemar_exact(3, 12, "less") == mcnemar_exact(12, 3, "greater")
    assert mcnemar_exact(3, 12, "greater") > 0.99  # the other direction: no evidence at all
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0


def test_paired_comparison_counts_the_discordant_images_and_bounds_the_difference():
    # Newcombe's (1998) first example: 36 both right, 12 only A, 2 only B, 0 both wrong
    first = np.array([True] * 36 + [True] * 12 + [False] * 2)
    second = np.array([True] * 36 + [False] * 12 + [True] * 2)
    pair = paired_comparison("a", first, "b", second)
    assert (pair.both_right, pair.first_only, pair.second_only, pair.both_wrong) == (36, 12, 2, 0)
    assert pair.difference == pytest.approx(0.2)
    assert (pair.ci_low, pair.ci_high) == pytest.approx((0.0569, 0.3404), abs=5e-5)
    assert pair.p_value == pytest.approx(mcnemar_exact(12, 2))
    assert pair.significant and pair.verdict().startswith("a is better")
    swapped = paired_comparison("b", second, "a", first)
    assert (swapped.ci_low, swapped.ci_high) == pytest.approx((-0.3404, -0.0569), abs=5e-5)


def test_a_small_gain_on_few_images_is_called_noise():
    right = np.array([True] * 45 + [False] * 15)
    better = right.copy()
    better[45:47] = True  # two more right: 78.3% against 75.0%
    pair = paired_comparison("challenger", better, "champion", right)
    assert pair.difference == pytest.approx(2 / 60)
    assert pair.ci_low < 0 < pair.ci_high
    assert not pair.significant and "noise" in pair.verdict()


def test_metric_intervals_hold_the_point_estimates_and_are_seeded():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 50)
    p = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, 100), 0, 1)
    values = compute_metrics(y, p)
    intervals = metric_intervals(y, p, resamples=500, seed=1)
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
        low, high = intervals[f"{name}_ci_low"], intervals[f"{name}_ci_high"]
        assert low <= values[name] <= high, name
        assert high - low > 0.01, name  # 100 images are never that sure
    accuracy = round(values["accuracy"] * 100)
    assert (intervals["accuracy_ci_low"], intervals["accuracy_ci_high"]) == wilson_interval(
        accuracy, 100
    )
    assert metric_intervals(y, p, resamples=500, seed=1) == intervals
    assert metric_intervals(y, p, resamples=500, seed=2) != intervals


def test_bootstrap_keeps_both_classes_and_says_nothing_without_resamples():
    y = np.array([0] * 3 + [1] * 3)
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    auc = bootstrap_intervals(y, p, resamples=200, seed=0)["roc_auc"]
    assert all(math.isfinite(v) for v in auc)  # every resample has a cat and a dog
    assert all(math.isnan(v) for v in bootstrap_intervals(y, p, resamples=0)["roc_auc"])


def test_the_noise_of_a_test_set_in_words():
    assert round(100 * noise_margin(60)) == 12
    assert noise_sentence(60).startswith("60 test images: a 95% interval is up to ±12 points")
    assert "small set" in noise_sentence(200) and "paired" not in noise_sentence(200)
    assert "unless the paired test below" in noise_sentence(200, paired=True)
    assert "small set" not in noise_sentence(2000)
    assert noise_sentence(2000, what="photos").startswith(
        "2,000 photos: a 95% interval is up to ±2"
    )


def test_format_interval():
    assert format_interval(0.75, 0.628, 0.842) == "75.0% [62.8, 84.2]"
    assert format_interval(0.91234, 0.85, 0.96, percent=False) == "0.912 [0.850, 0.960]"
    assert format_interval(0.75, math.nan, math.nan) == "75.0%"
    assert format_interval(math.nan, 0, 1) == "n/a"
