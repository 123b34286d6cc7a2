"""A model's score on new photos, in MLflow: a run of its own, the model's page and its version.

``catdog score`` logs one run (``catdog.kind=score``) with the metrics and their 95% intervals,
the per-photo CSV and the photos as a dataset input whose digest is DVC's hash of the folder or
zip. When the model is an MLflow model (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, or a
``runs:/`` URI of a logged model), the same metrics go onto the logged model (prefixed
``score_``, linked to that dataset), and a registered version gets a tag
``catdog.score.<dataset>`` saying how it did, so the registry shows it beside the test metrics.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from catdog.intervals import format_interval
from catdog.score import ScoreResult
from catdog.tracking.lineage import dvc_hash
from catdog.tracking.registry import logged_model_id
from catdog.tracking.store import configure_mlflow, run_url

__all__ = [
    "MODEL_PREFIX",
    "PHOTOS_ARTIFACT",
    "REPORT_ARTIFACT",
    "ScoreLog",
    "log_score",
    "model_target",
    "score_dataset",
    "score_tag_key",
]

MODEL_PREFIX = "score_"  # a logged model's metrics from a score: score_accuracy, ...
PHOTOS_ARTIFACT = "score/photos.csv"
REPORT_ARTIFACT = "score/report.txt"
_MLFLOW_SCHEMES = ("runs:/", "models:/")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/ ]+")  # what MLflow allows in a tag key


@dataclass(frozen=True)
class ScoreLog:
    """Where a score was logged: its run, and the registered version it tagged (if any)."""

    run_id: str
    experiment_id: str
    url: str
    model_id: str | None
    version: str | None  # NAME/VERSION


def score_dataset(result: ScoreResult, source: Path) -> Any:
    """The scored photos (path, actual) as an MLflow dataset named after the folder or zip, its
    digest DVC's hash of it (the same data has the same digest wherever it lies)."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    # Named, not guessed: MLflow registers its local source twice and warns when it resolves one
    local = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    resolved = source.resolve()
    return mlflow.data.from_pandas(
        result.photos[["path", "actual"]],
        source=local(resolved.as_uri()),
        targets="actual",
        name=resolved.name,
        digest=dvc_hash(resolved)[:36],
    )


def score_tag_key(dataset_name: str) -> str:
    """The registered version's tag holding its score on a dataset: ``catdog.score.<name>``."""
    return f"catdog.score.{_TAG_UNSAFE.sub('_', dataset_name)}"


def model_target(reference: str) -> tuple[str | None, Any | None]:
    """The logged model and the registered version behind an MLflow model URI.

    Returns:
        ``(model id, model version)``: both for ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``,
        the model id only for ``runs:/`` or ``models:/<model id>``; None where there is none
        (a ``.keras`` file, a run's files logged without a logged model).
    """
    if not reference.startswith(_MLFLOW_SCHEMES):
        return None, None
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    client = MlflowClient()
    if reference.startswith("models:/"):
        found = get_model_name_and_version(client, reference)
        if len(found) == 2:
            version = client.get_model_version(*found)
            return logged_model_id(version), version
    try:
        return mlflow.models.get_model_info(reference).model_id, None
    except MlflowException:
        return None, None


def _finite(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Undefined values (recall of an absent class, ROC AUC of one class) are left out."""
    return {f"{prefix}{key}": value for key, value in metrics.items() if math.isfinite(value)}


def _version_summary(result: ScoreResult, run_id: str) -> str:
    m = result.metrics
    accuracy = format_interval(m["accuracy"], m["accuracy_ci_low"], m["accuracy_ci_high"])
    return f"{accuracy} on {result.images:,} photos, run {run_id}"


def log_score(
    result: ScoreResult,
    *,
    source: Path,
    model_ref: str,
    home: Path,
    experiment: str,
    report: str = "",
) -> ScoreLog:
    """Log a score as one MLflow run; onto the logged model and registered version too.

    Args:
        result: The score.
        source: The folder or zip scored (hashed with DVC for the dataset's digest).
        model_ref: The ``--model`` reference as given: a ``.keras`` path or an MLflow URI.
        home: The project's tracking home (its store unless ``MLFLOW_TRACKING_URI`` is set).
        experiment: The MLflow experiment (``params.yaml``'s ``mlflow.experiment``).
        report: The text report, kept beside the CSV as an artifact.

    Returns:
        The run, its page, and the logged model and version it reached.
    """
    experiment_id = configure_mlflow(home, experiment)
    dataset = score_dataset(result, source)
    model_id, version = model_target(model_ref)
    tags = {
        "catdog.kind": "score",
        "catdog.model_ref": model_ref,
        "catdog.source": str(source.resolve()),
    }
    metrics = result.flat_metrics()
    with mlflow.start_run(run_name=f"score · {dataset.name}", tags=tags) as run:
        mlflow.log_param("threshold", result.threshold)
        mlflow.log_input(dataset, context="evaluation")
        mlflow.log_metrics(_finite(metrics))  # before any model is linked: the run's own
        mlflow.log_text(result.photos_csv(), PHOTOS_ARTIFACT)
        if report:
            mlflow.log_text(report, REPORT_ARTIFACT)
        if model_id:
            mlflow.log_metrics(_finite(metrics, MODEL_PREFIX), model_id=model_id, dataset=dataset)
        run_id = run.info.run_id
    label = None
    if version is not None:
        MlflowClient().set_model_version_tag(
            version.name,
            version.version,
            score_tag_key(dataset.name),
            _version_summary(result, run_id),
        )
        label = f"{version.name}/{version.version}"
    return ScoreLog(run_id, experiment_id, run_url(experiment_id, run_id), model_id, label)
