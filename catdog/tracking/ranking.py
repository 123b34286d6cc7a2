"""Rank pipeline executions per model, and say which differences are more than luck.

Executions scored on the same test split (the same ``dvc.manifest`` hash on their evaluate runs)
are paired image by image with the most accurate one: each evaluate run logs its per-image
predictions (``predictions/<model>.csv``), and McNemar's exact test on the images exactly one of
the two got right says whether the difference is noise. Executions on other test images keep their
own interval and are said not to be comparable by a paired test.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catdog.intervals import Pair, format_interval, noise_sentence, paired_comparison
from catdog.stage_table import MODELS

__all__ = ["NOT_COMPARABLE", "count_text", "execution_label", "rank_executions", "ranking_blocks"]

PREDICTIONS_DIR = "predictions"  # the evaluate run's artifacts: <model>.csv, test images in order
NOT_COMPARABLE = "different test images: not comparable by a paired test"
PAIRED_TEST_NOTE = (
    "Each execution is compared with the most accurate one on the test images exactly one of "
    "the two got right (McNemar's exact test, two-sided; the difference's interval is "
    "Newcombe's paired score interval): p below 0.05 is more than the luck of the test set."
)
PREDICTION_COLUMNS = frozenset({"path", "actual", "predicted"})
#: A model's predictions from an evaluate run, by (evaluate run id, model); None if not logged.
PredictionsLoader = Callable[[str, str], "pd.DataFrame | None"]


def execution_label(name: str, run_id: str) -> str:
    """How reports name an execution: its run name and the start of its run id."""
    return f"{name} ({run_id[:8]})"


def rank_executions(
    frame: pd.DataFrame, tracking_uri: str, models: Sequence[str] = MODELS
) -> dict[str, pd.DataFrame]:
    """Each model's executions ranked by test accuracy, each paired with the most accurate.

    A model is ranked when two executions or more have its accuracy. The predictions are
    downloaded from the evaluate runs' ``predictions/`` artifacts into a temporary folder, removed
    on return, and matched image by image by their ``path``.

    Args:
        frame: Executions, as :func:`collect_runs` gives them.
        tracking_uri: The MLflow store they were read from.
        models: The models to rank.

    Returns:
        model -> one row per execution, the most accurate first: ``rank``, ``execution`` (its
        label in the report), ``run_id``, ``test_images``, ``accuracy``, ``accuracy_ci_low``,
        ``accuracy_ci_high``, ``pair`` (the :class:`~catdog.intervals.Pair` of this execution,
        first, against the most accurate, second; None without a paired test) and ``verdict``
        (in words, with the reason when there is no paired test).
    """
    rankings: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory(prefix="catdog-compare-") as folder:
        load = _predictions_loader(tracking_uri, Path(folder))
        for model in models:
            scored = frame[frame[f"{model}.accuracy"].notna()]
            if len(scored) > 1:
                ranked = scored.sort_values(f"{model}.accuracy", ascending=False, kind="stable")
                rankings[model] = _rank_model(ranked, model, load)
    return rankings


def _rank_model(ranked: pd.DataFrame, model: str, load: PredictionsLoader) -> pd.DataFrame:
    best = ranked.iloc[0]
    rows = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        pair, verdict = (
            (None, "the most accurate") if rank == 1 else _pair_with_best(row, best, model, load)
        )
        rows.append(
            {
                "rank": rank,
                "execution": execution_label(row["name"], row["run_id"]),
                "run_id": row["run_id"],
                "test_images": row["test_images"],
                "accuracy": row[f"{model}.accuracy"],
                "accuracy_ci_low": row[f"{model}.accuracy_ci_low"],
                "accuracy_ci_high": row[f"{model}.accuracy_ci_high"],
                "pair": pair,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def _pair_with_best(
    row: pd.Series, best: pd.Series, model: str, load: PredictionsLoader
) -> tuple[Pair | None, str]:
    """This execution against the most accurate one, image by image, or why it cannot be."""
    if not row["test_split"] or not best["test_split"]:
        return None, "test split not logged: no paired test"
    if row["test_split"] != best["test_split"]:
        return None, NOT_COMPARABLE
    mine, theirs = load(row["evaluate_run_id"], model), load(best["evaluate_run_id"], model)
    if mine is None or theirs is None:
        return None, "no predictions logged (evaluated before they were): no paired test"
    right = _right_on_the_same_images(mine, theirs)
    if right is None:
        return None, "predictions for other images than the best's: no paired test"
    first, second = (
        execution_label(row["name"], row["run_id"]),
        execution_label(best["name"], best["run_id"]),
    )
    pair = paired_comparison(first, right[0], second, right[1])
    return pair, _verdict(pair)


def _right_on_the_same_images(
    first: pd.DataFrame, second: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray] | None:
    """Whether each got each image right, in ``second``'s order; None unless both scored the
    same images once each (a hash that agrees on files that differ is not trusted)."""
    one = (first["actual"] == first["predicted"]).set_axis(first["path"])
    two = (second["actual"] == second["predicted"]).set_axis(second["path"])
    if one.empty or one.index.has_duplicates or two.index.has_duplicates:
        return None
    if set(one.index) != set(two.index):
        return None
    return one.reindex(two.index).to_numpy(bool), two.to_numpy(bool)


def _verdict(pair: Pair) -> str:
    p = f"p = {pair.p_value:.3g}"
    if not pair.significant:
        return f"not distinguishable from the best: {p}"
    return f"{'worse' if pair.difference < 0 else 'better'} than the best: {p}"


def _predictions_loader(tracking_uri: str, folder: Path) -> PredictionsLoader:
    """Loads a model's predictions of an evaluate run, downloading each run's folder once."""
    downloaded: dict[str, Path | None] = {}

    def load(run_id: str, model: str) -> pd.DataFrame | None:
        if run_id not in downloaded:
            downloaded[run_id] = _download_predictions(tracking_uri, run_id, folder / run_id)
        where = downloaded[run_id]
        csv = where / f"{model}.csv" if where is not None else None
        if csv is None or not csv.is_file():
            return None
        predictions = pd.read_csv(csv, dtype=str, keep_default_na=False)
        return predictions if set(predictions.columns) >= PREDICTION_COLUMNS else None

    return load


def _download_predictions(tracking_uri: str, run_id: str, folder: Path) -> Path | None:
    """The run's ``predictions/`` artifacts, downloaded into ``folder``; None if it has none."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    folder.mkdir(parents=True)
    try:
        where = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=PREDICTIONS_DIR,
            tracking_uri=tracking_uri,
            dst_path=str(folder),
        )
    except (MlflowException, OSError):  # no such folder: evaluated before predictions were logged
        return None
    return Path(where)


def count_text(value: float) -> str:
    return f"{int(value):,}" if math.isfinite(value) else "n/a"


def _ranking_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """A ranking for people: intervals and counts as text, McNemar's p in the verdict (a
    column of p-values alone would be rounded to the table's three places)."""
    rows = []
    for _, row in ranking.iterrows():
        pair = row["pair"] if isinstance(row["pair"], Pair) else None  # pandas may hold NaN
        rows.append(
            {
                "execution": row["execution"],
                "rank": str(row["rank"]),
                "test images": count_text(row["test_images"]),
                "accuracy": format_interval(
                    row["accuracy"], row["accuracy_ci_low"], row["accuracy_ci_high"]
                ),
                "vs the best (points)": _points(pair) if pair else "",
                "only this right": str(pair.first_only) if pair else "",
                "only the best right": str(pair.second_only) if pair else "",
                "verdict": row["verdict"],
            }
        )
    return pd.DataFrame(rows).set_index("execution")


def _points(pair: Pair) -> str:
    d, low, high = (100 * v for v in (pair.difference, pair.ci_low, pair.ci_high))
    return f"{d:+.1f} [{low:+.1f}, {high:+.1f}]"


def ranking_blocks(rankings: Mapping[str, pd.DataFrame]) -> list[tuple[str, Any]]:
    """A section per model: the test set's noise in words, how the test reads (once), the table."""
    blocks: list[tuple[str, Any]] = []
    for index, (model, ranking) in enumerate(rankings.items()):
        images = float(ranking["test_images"].iloc[0])
        sentences = [f"{noise_sentence(int(images))}."] if math.isfinite(images) else []
        if index == 0:
            sentences.append(PAIRED_TEST_NOTE)
        blocks.append(("h2", f"Ranking of {model} (paired on the same test images)"))
        blocks += [("p", " ".join(sentences))] if sentences else []
        blocks.append(("table", _ranking_table(ranking)))
    return blocks
