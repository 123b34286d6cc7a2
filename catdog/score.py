"""Score a model on a folder of labelled photos: accuracy with its 95% interval, not bare numbers.

A team's own photos (Kaggle's flat ``cat.N.jpg``/``dog.N.jpg`` names, or ``cats/`` ``dogs/``
folders at any depth, or a zip of either) are a sample like any test set: this module says what
the model got right on them and how sure that figure is. Files go through the same checks as the
ingest and ``catdog predict`` (a full decode); what cannot be scored is reported with a reason,
never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from catdog.errors import SourceError
from catdog.ingest import _skip_reason
from catdog.intervals import format_interval, metric_intervals, noise_sentence, wilson_interval
from catdog.metrics import compute_metrics, confusion_matrix
from catdog.predict import predict_images
from catdog.sources import PreparedSource, label_files
from catdog.vocabulary import LABEL_INDEX, LABELS

__all__ = [
    "MISTAKES_SHOWN",
    "ClassRecall",
    "Photo",
    "Photos",
    "ScoreResult",
    "find_photos",
    "render_report",
    "score_photos",
]

#: How many of the most confident mistakes a report lists.
MISTAKES_SHOWN = 8
_WHAT_TO_GIVE = "give a folder of cat.N.jpg/dog.N.jpg photos, class folders cats/ dogs/, or a zip"


@dataclass(frozen=True)
class Photo:
    """A labelled image file to score.

    Attributes:
        path: How reports name it: relative to the source, after the zip's name for a zip.
        file: Where it is read from.
        label: ``cat`` or ``dog``, from its name or its class folder.
    """

    path: str
    file: Path
    label: str


@dataclass(frozen=True)
class Photos:
    """What a source holds: the labelled photos to score and the files that will not be."""

    name: str
    photos: tuple[Photo, ...]
    skipped: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ClassRecall:
    """How many photos of one class the model called that class, with the 95% Wilson interval."""

    label: str
    right: int
    total: int
    low: float
    high: float

    @property
    def value(self) -> float:
        """The recall; NaN when the source holds no photo of the class."""
        return self.right / self.total if self.total else math.nan


@dataclass(frozen=True)
class ScoreResult:
    """A model's score on a source's photos.

    Attributes:
        name: The source, as the user named it.
        photos: One row per scored photo: path, actual, predicted, prob_dog (source order).
        skipped: ``(path, reason)`` of every file not scored: unlabelled, hidden or system
            files, unreadable or hostile images.
        threshold: Predicted dog at or above this probability.
        metrics: :func:`~catdog.metrics.compute_metrics`'s values and their
            ``<metric>_ci_low``/``_ci_high`` bounds; recall (of dogs) is NaN without dogs.
        recalls: Per class (``cat``, ``dog``): the share of its photos called that class.
        confusion: ``((cats called cat, cats called dog), (dogs called cat, dogs called dog))``.
        mistakes: The most confident wrong rows of ``photos``, worst first.
    """

    name: str
    photos: pd.DataFrame
    skipped: tuple[tuple[str, str], ...]
    threshold: float
    metrics: Mapping[str, float]
    recalls: Mapping[str, ClassRecall]
    confusion: tuple[tuple[int, int], tuple[int, int]]
    mistakes: pd.DataFrame

    @property
    def images(self) -> int:
        """How many photos were scored."""
        return len(self.photos)

    @property
    def missing_class(self) -> str | None:
        """The class with no photo in the source, if one is missing."""
        return next((label for label in LABELS if self.recalls[label].total == 0), None)

    def flat_metrics(self) -> dict[str, float]:
        """Every number of the score under one flat key, for a tracker or JSON.

        Returns:
            The metrics with their bounds, ``cat_recall``/``dog_recall`` with theirs,
            ``test_images`` and ``skipped_files``. Undefined values are NaN.
        """
        flat = {key: float(value) for key, value in self.metrics.items()}
        for label, recall in self.recalls.items():
            flat[f"{label}_recall"] = recall.value
            flat[f"{label}_recall_ci_low"] = recall.low
            flat[f"{label}_recall_ci_high"] = recall.high
        flat["test_images"] = float(self.images)
        flat["skipped_files"] = float(len(self.skipped))
        return flat

    def photos_csv(self) -> str:
        """The per-photo table as CSV text."""
        return self.photos.to_csv(index=False, lineterminator="\n")


def find_photos(prepared: PreparedSource, name: str = "") -> Photos:
    """List the labelled photos of a prepared source, and the files that will not be scored.

    Args:
        prepared: What :func:`~catdog.sources.prepare_source` made of the folder or zip.
        name: The source as the user named it, for messages (default: the prepared root).

    Returns:
        The labelled image candidates (sorted by path), and ``(path, reason)`` for hidden files,
        system debris, files that are not images, files with no recognisable label and zip
        members that were not extracted.

    Raises:
        SourceError: The source holds no file, or no labelled photo at all.
    """
    name = name or str(prepared.root)
    files = label_files(prepared.root)
    if not files and not prepared.issues:
        raise SourceError(f"{name}: no file in it; {_WHAT_TO_GIVE}")
    photos: list[Photo] = []
    # zip members that were never extracted (unsafe names, links, bombs) are skipped files too
    skipped = [(issue.path, issue.reason) for issue in prepared.issues]
    for relative, label in files:
        reason = _skip_reason(relative)
        if reason or label is None:
            skipped.append((prepared.report_path(relative), reason or "no label"))
        else:
            photos.append(Photo(prepared.report_path(relative), prepared.root / relative, label))
    if not photos:
        raise SourceError(
            f"{name}: none of its {len(skipped):,} files is a labelled photo (e.g. "
            f"{skipped[0][0]}: {skipped[0][1]}); {_WHAT_TO_GIVE}"
        )
    return Photos(name, tuple(photos), tuple(skipped))


def score_photos(
    model: keras.Model,
    found: Photos,
    *,
    threshold: float = 0.5,
    resamples: int = 1000,
    seed: int = 42,
) -> ScoreResult:
    """Predict every photo and measure the model against the labels.

    Args:
        model: A model taking raw RGB images (see :func:`~catdog.predict.images_model`).
        found: What :func:`find_photos` listed.
        threshold: Predicted dog at or above this probability, in (0, 1).
        resamples: Bootstrap resamples for the intervals of F1, ROC AUC and log loss.
        seed: The bootstrap's seed: the same photos and seed give the same intervals.

    Returns:
        The score. Images that cannot be decoded (truncated, not an image, empty, too many
        pixels) join the skipped files with their reason.

    Raises:
        SourceError: No labelled photo could be read.
    """
    table, problems = predict_images(model, [p.file for p in found.photos], threshold=threshold)
    by_file = {str(p.file): p for p in found.photos}
    unreadable = tuple((by_file[str(file)].path, reason) for file, reason in problems)
    if table.empty:
        path, reason = unreadable[0]
        raise SourceError(
            f"{found.name}: none of its {len(found.photos):,} labelled photos can be read "
            f"(e.g. {path}: {reason}); {_WHAT_TO_GIVE} of readable JPEG or PNG images"
        )
    scored = [by_file[file] for file in table["path"]]
    photos = pd.DataFrame(
        {
            "path": [p.path for p in scored],
            "actual": [p.label for p in scored],
            "predicted": table["label"].to_list(),
            "prob_dog": table["prob_dog"].to_numpy(),
        }
    )
    return _measure(photos, found, unreadable, threshold, resamples, seed)


def _measure(
    photos: pd.DataFrame,
    found: Photos,
    unreadable: tuple[tuple[str, str], ...],
    threshold: float,
    resamples: int,
    seed: int,
) -> ScoreResult:
    """The numbers of a score, from the per-photo table."""
    y_true = photos["actual"].map(LABEL_INDEX).to_numpy(dtype=np.int64)
    y_prob = photos["prob_dog"].to_numpy(dtype=np.float64)
    y_pred = (y_prob >= threshold).astype(np.int64)
    metrics = compute_metrics(y_true, y_prob, threshold)
    if not y_true.any():  # compute_metrics says 0.0; with no dog, dog recall is undefined
        metrics["recall"] = math.nan
    metrics.update(metric_intervals(y_true, y_prob, threshold, resamples=resamples, seed=seed))
    matrix = confusion_matrix(y_true, y_pred)
    recalls = {
        label: _class_recall(label, int(matrix[i, i]), int(matrix[i].sum()))
        for label, i in LABEL_INDEX.items()
    }
    confusion = (
        (int(matrix[0, 0]), int(matrix[0, 1])),
        (int(matrix[1, 0]), int(matrix[1, 1])),
    )
    return ScoreResult(
        name=found.name,
        photos=photos,
        skipped=(*found.skipped, *unreadable),
        threshold=threshold,
        metrics=metrics,
        recalls=recalls,
        confusion=confusion,
        mistakes=_worst_mistakes(photos, y_true, y_prob, y_pred),
    )


def _class_recall(label: str, right: int, total: int) -> ClassRecall:
    low, high = wilson_interval(right, total)
    return ClassRecall(label, right, total, low, high)


def _worst_mistakes(
    photos: pd.DataFrame, y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray
) -> pd.DataFrame:
    """The wrong rows, the most confident first (as the evaluate stage ranks them)."""
    wrong = np.flatnonzero(y_pred != y_true)
    order = wrong[np.argsort(-np.abs(y_prob[wrong] - y_true[wrong]), kind="stable")]
    return photos.iloc[order[:MISTAKES_SHOWN]].reset_index(drop=True)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _headline(result: ScoreResult) -> str:
    m = result.metrics
    accuracy = format_interval(m["accuracy"], m["accuracy_ci_low"], m["accuracy_ci_high"])
    cats, dogs = result.recalls["cat"].total, result.recalls["dog"].total
    return (
        f"accuracy {accuracy} on {_count(result.images, 'photo')} "
        f"({_count(cats, 'cat')}, {_count(dogs, 'dog')})"
    )


def _recall_line(recall: ClassRecall) -> str:
    if not recall.total:
        return f"{recall.label} recall n/a (no {recall.label} photo)"
    value = format_interval(recall.value, recall.low, recall.high)
    called = f"{recall.right:,} of {_count(recall.total, recall.label)} called {recall.label}"
    return f"{recall.label} recall {value}: {called}"


def _confusion_lines(result: ScoreResult) -> list[str]:
    width = max(5, len(f"{result.images:,}"))
    lines = [f"confusion matrix at threshold {result.threshold:g} (rows actual, columns predicted)"]
    lines.append(f"  {'':<6}" + "".join(f"{label:>{width + 2}}" for label in LABELS))
    for label, row in zip(LABELS, result.confusion, strict=True):
        lines.append(f"  {label:<6}" + "".join(f"{count:>{width + 2},}" for count in row))
    return lines


def _mistake_lines(result: ScoreResult) -> list[str]:
    wrong = result.confusion[0][1] + result.confusion[1][0]
    if not wrong:
        return ["no mistakes"]
    lines = [f"worst mistakes ({len(result.mistakes)} of {wrong:,} wrong, most confident first)"]
    for row in result.mistakes.itertuples(index=False):
        lines.append(f"  {row.path}  actual {row.actual}, p(dog) {row.prob_dog:.3f}")
    return lines


def render_report(result: ScoreResult) -> str:
    """The score as text for a terminal, headline first.

    Args:
        result: What :func:`score_photos` returned.

    Returns:
        Lines: accuracy with its 95% interval and the photo counts; each class's recall with
        its interval; a note when one class is missing; the confusion matrix; ROC AUC with its
        interval; the worst mistakes; the count of skipped files; the noise of this many
        photos. Ends with a newline.
    """
    m = result.metrics
    lines = [_headline(result), *(_recall_line(result.recalls[label]) for label in LABELS)]
    missing = result.missing_class
    if missing:
        present = "dog" if missing == "cat" else "cat"
        lines.append(
            f"only {present}s here: {missing} recall and ROC AUC are undefined without "
            f"{missing} photos, and accuracy is {present} recall"
        )
    lines += _confusion_lines(result)
    auc = format_interval(m["roc_auc"], m["roc_auc_ci_low"], m["roc_auc_ci_high"], percent=False)
    lines.append(f"ROC AUC {auc}")
    lines += _mistake_lines(result)
    skipped = len(result.skipped)
    lines.append(
        f"{_count(skipped, 'file')} skipped, not scored (reasons above, on stderr)"
        if skipped
        else "no file skipped"
    )
    lines.append(noise_sentence(result.images, what="photos"))
    return "\n".join(lines) + "\n"
