"""How sure a test-set figure is: 95% intervals, paired comparisons, and the noise of a test set.

A test set is a sample. An accuracy of 0.75 on 60 images is any true accuracy between about 0.63
and 0.84; two models scored on the same 60 images differ by luck unless the images one gets right
and the other wrong say otherwise. This module turns counts into those statements:

* :func:`wilson_interval`: a proportion's interval (accuracy, precision, recall). Wilson's score
  interval stays inside [0, 1] and keeps its coverage at small counts and at 0% or 100%, where the
  textbook normal interval collapses to a point.
* :func:`bootstrap_intervals`: metrics that are not a count of successes (ROC AUC, log loss, F1),
  from a seeded bootstrap over the test images, resampled within each class so every resample has
  both classes.
* :func:`paired_comparison`: two models on the same images. The difference in accuracy depends on
  the discordant images only (one right, the other wrong): McNemar's exact test asks whether their
  split could be a fair coin's, and Newcombe's hybrid score interval (his method 10) bounds the
  difference using the correlation between the two models' answers.

Conventions follow :mod:`catdog.metrics`: labels 0 (cat) and 1 (dog), ``y_prob`` the probability
of dog, predicted dog when ``y_prob >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOOTSTRAPPED",
    "CONFIDENCE",
    "PROPORTIONS",
    "SHOWN_AS_PERCENT",
    "Pair",
    "bootstrap_intervals",
    "format_interval",
    "mcnemar_exact",
    "metric_intervals",
    "noise_margin",
    "noise_sentence",
    "paired_comparison",
    "wilson_interval",
]

CONFIDENCE = 0.95
_Z = 1.959963984540054  # the normal quantile of 0.975: a two-sided 95% interval
#: Metrics given a Wilson interval, each with the count it is a proportion of.
PROPORTIONS = ("accuracy", "precision", "recall")
#: Metrics given a bootstrap interval.
BOOTSTRAPPED = ("f1", "roc_auc", "log_loss")


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """The 95% Wilson score interval of ``successes`` out of ``total``.

    Args:
        successes: The count of successes, ``0 <= successes <= total``.
        total: The number of trials; 0 gives ``(nan, nan)`` (nothing was measured).

    Returns:
        ``(low, high)``, both in [0, 1].

    Raises:
        ValueError: If the counts are negative or ``successes > total``.
    """
    if total < 0 or successes < 0 or successes > total:
        raise ValueError(f"need 0 <= successes <= total, got {successes} of {total}")
    if total == 0:
        return math.nan, math.nan
    p = successes / total
    z2 = _Z * _Z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = _Z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    # at 0 or 1 successes away from the edge, rounding can leave -1e-17: the bound is the edge
    return max(0.0, centre - half), min(1.0, centre + half)


def noise_margin(total: int) -> float:
    """The widest half-width of a 95% interval on ``total`` images (at 50% accuracy)."""
    low, high = wilson_interval(total // 2, 2 * (total // 2)) if total > 1 else (0.0, 1.0)
    return (high - low) / 2


def noise_sentence(total: int, *, what: str = "test images", paired: bool = False) -> str:
    """The noise of ``total`` images in words: ``60 test images: ±12 points``, and what follows.

    Args:
        total: The number of images scored.
        what: What they are, e.g. ``photos``.
        paired: Whether a paired comparison follows that can still tell close models apart.
    """
    points = round(100 * noise_margin(total))
    text = f"{total:,} {what}: a 95% interval is up to ±{points} points"
    if points >= 5:
        text += "; a small set, so differences of a few points are noise" + (
            " unless the paired test below says otherwise" if paired else ""
        )
    return text


def mcnemar_exact(wins: int, losses: int, alternative: str = "two-sided") -> float:
    """McNemar's exact test on the discordant images of two models scored on the same images.

    Args:
        wins: Images model A got right and model B wrong.
        losses: Images model B got right and model A wrong.
        alternative: ``greater`` (A is better), ``less`` (B is better) or ``two-sided``.

    Returns:
        The p-value: under "no difference" each discordant image is a fair coin's toss, so this
        is a binomial tail of ``wins`` in ``wins + losses`` at one half. 1.0 when no image is
        discordant.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"discordant counts must not be negative, got {wins} and {losses}")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be greater, less or two-sided, got {alternative!r}")
    n = wins + losses
    if n == 0:
        return 1.0

    def upper_tail(k: int) -> float:  # P(X >= k), X ~ Binomial(n, 1/2), exact in integers
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n

    if alternative == "greater":
        return upper_tail(wins)
    if alternative == "less":
        return upper_tail(losses)
    return min(1.0, 2 * upper_tail(max(wins, losses)))


@dataclass(frozen=True)
class Pair:
    """Two models scored on the same images: A's accuracy minus B's, and how sure it is."""

    first: str
    second: str
    images: int
    both_right: int
    first_only: int  # A right, B wrong
    second_only: int  # B right, A wrong
    both_wrong: int
    difference: float  # A's accuracy minus B's
    ci_low: float
    ci_high: float
    p_value: float  # McNemar's exact test, two-sided

    @property
    def significant(self) -> bool:
        """True when the two-sided test rejects "no difference" at the 5% level."""
        return self.p_value < 1 - CONFIDENCE

    def verdict(self) -> str:
        """The comparison in words."""
        if not self.significant:
            return f"no clear difference (p = {self.p_value:.3g}): noise at this test size"
        better = self.first if self.difference > 0 else self.second
        return f"{better} is better (p = {self.p_value:.3g})"

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain values, for JSON and tables."""
        return {
            "first": self.first,
            "second": self.second,
            "images": self.images,
            "accuracy_difference": self.difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "first_only_right": self.first_only,
            "second_only_right": self.second_only,
            "mcnemar_p": self.p_value,
        }


def _newcombe_paired(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval for a paired difference of proportions, method
    10: ``a`` both right, ``b`` first only, ``c`` second only, ``d`` both wrong."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n)
    l2, u2 = wilson_interval(a + c, n)
    product = (a + b) * (c + d) * (a + c) * (b + d)
    # the correlation of the two answers, its numerator corrected towards 0 by n/2 as Newcombe
    # does: a positive correlation narrows the interval, so it is not overstated
    association = a * d - b * c
    corrected = max(association - n / 2, 0.0) if association > 0 else association
    phi = corrected / math.sqrt(product) if product else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    difference = p1 - p2
    return max(-1.0, difference - delta), min(1.0, difference + epsilon)


def paired_comparison(
    first: str, first_right: np.ndarray, second: str, second_right: np.ndarray
) -> Pair:
    """Compare two models from whether each got each image right (the same images, in order).

    Args:
        first: Model A's name.
        first_right: A boolean per image: did A get it right.
        second: Model B's name.
        second_right: The same for B, on the same images in the same order.

    Returns:
        The :class:`Pair`: the 2x2 counts, A's accuracy minus B's with its 95% interval, and
        McNemar's exact two-sided p-value.
    """
    one = np.asarray(first_right, dtype=bool).reshape(-1)
    two = np.asarray(second_right, dtype=bool).reshape(-1)
    if len(one) != len(two) or len(one) == 0:
        raise ValueError(f"need the same, non-empty images for both: {len(one)} and {len(two)}")
    a, b = int((one & two).sum()), int((one & ~two).sum())
    c, d = int((~one & two).sum()), int((~one & ~two).sum())
    low, high = _newcombe_paired(a, b, c, d)
    return Pair(
        first, second, len(one), a, b, c, d, (b - c) / len(one), low, high, mcnemar_exact(b, c)
    )


def _stratified_resamples(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` rows of image indices, each class resampled with replacement on its own."""
    rng = np.random.default_rng(seed)
    parts = []
    for value in (0, 1):
        members = np.flatnonzero(labels == value)
        if len(members):
            parts.append(members[rng.integers(0, len(members), (resamples, len(members)))])
    return np.concatenate(parts, axis=1)


def _auc_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (Mann-Whitney with average ranks); NaN where one class is missing."""
    from scipy.stats import rankdata

    ranks = rankdata(probs, axis=1)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    rank_sum = (ranks * labels).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _f1_rows(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    tp = (labels & predicted).sum(axis=1)
    wrong = (labels ^ predicted).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong), 0.0)


def bootstrap_intervals(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    threshold: float = 0.5,
    *,
    resamples: int = 1000,
    seed: int = 42,
) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of F1, ROC AUC and log loss from a seeded bootstrap.

    The test images are resampled with replacement within each class (a stratified bootstrap:
    the test set's class balance is fixed by the split, and every resample can have an AUC).

    Args:
        y_true: Labels, 0 or 1.
        y_prob: Probability of dog per image.
        threshold: Predicted dog at or above it (for F1).
        resamples: Bootstrap resamples; 0 gives no intervals (NaN).
        seed: The resampling seed: the same inputs and seed give the same intervals.

    Returns:
        ``{"f1": (low, high), "roc_auc": ..., "log_loss": ...}``; ROC AUC is ``(nan, nan)``
        when the test set has one class.
    """
    from catdog.metrics import LOG_LOSS_EPS

    labels = np.asarray(y_true).reshape(-1).astype(np.int64)
    probs = np.asarray(y_prob, dtype=np.float64).reshape(-1)
    if resamples <= 0:
        return {name: (math.nan, math.nan) for name in BOOTSTRAPPED}
    rows = _stratified_resamples(labels, resamples, seed)
    y, p = labels[rows], probs[rows]
    clipped = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    losses = -(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))
    values: dict[str, np.ndarray] = {
        "f1": _f1_rows(y.astype(bool), p >= threshold),
        "roc_auc": _auc_rows(y, p),
        "log_loss": losses.mean(axis=1),
    }
    alpha = (1 - CONFIDENCE) / 2
    out = {}
    for name, samples in values.items():
        finite = samples[np.isfinite(samples)]
        out[name] = (
            (float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha)))
            if len(finite)
            else (math.nan, math.nan)
        )
    return out


def metric_intervals(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    threshold: float = 0.5,
    *,
    resamples: int = 1000,
    seed: int = 42,
) -> dict[str, float]:
    """Every metric of :func:`catdog.metrics.compute_metrics` with its 95% interval.

    Returns:
        ``<metric>_ci_low`` and ``<metric>_ci_high`` for accuracy, precision and recall
        (Wilson; precision counts the predicted dogs, recall the actual dogs), F1, ROC AUC and
        log loss (bootstrap, see :func:`bootstrap_intervals`). An interval over nothing (no
        predicted dog, say) is NaN.
    """
    labels = np.asarray(y_true).reshape(-1).astype(np.int64)
    predicted = (np.asarray(y_prob).reshape(-1) >= threshold).astype(np.int64)
    right = int((labels == predicted).sum())
    tp = int((labels & predicted).sum())
    counts: Mapping[str, tuple[int, int]] = {
        "accuracy": (right, len(labels)),
        "precision": (tp, int(predicted.sum())),
        "recall": (tp, int(labels.sum())),
    }
    bounds: dict[str, tuple[float, float]] = {
        name: wilson_interval(*count) for name, count in counts.items()
    }
    bounds.update(bootstrap_intervals(labels, y_prob, threshold, resamples=resamples, seed=seed))
    out: dict[str, float] = {}
    for name in (*PROPORTIONS, *BOOTSTRAPPED):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = bounds[name]
    return out


def format_interval(
    value: float, low: float, high: float, percent: bool = True, digits: int = 1
) -> str:
    """``75.0% [62.8, 84.2]`` (or ``0.912 [0.85, 0.96]`` with ``percent=False``)."""
    if not math.isfinite(value):
        return "n/a"
    if percent:
        text = f"{100 * value:.{digits}f}%"
        return text + (f" [{100 * low:.{digits}f}, {100 * high:.{digits}f}]" * _finite(low, high))
    text = f"{value:.3f}"
    return text + (f" [{low:.3f}, {high:.3f}]" * _finite(low, high))


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


#: How each metric is shown in a report: as a percentage or as a number.
SHOWN_AS_PERCENT: Mapping[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": False,
    "log_loss": False,
}
