"""The champion: the model served as ``models:/catdog@champion``, which never silently gets worse.

Evaluate's ``promote-champion`` step takes the best of this execution's models (test accuracy,
ROC AUC breaking ties) as the challenger, scores the current champion on the same test set, and
moves the alias ``champion`` only if the challenger is more accurate (a tie keeps the incumbent).
The challenger and incumbent, both scores and the decision are recorded on the evaluate run, on
the ``catdog`` registered model and, for a promoted version, on that version; ``catdog lineage
catdog@champion`` shows them. Promoting by hand stays possible with MLflow's own alias commands.

``catdog`` versions are the champion wrapped to take image file bytes
(:mod:`tracking.served_model`): what ``catdog predict`` and ``mlflow models serve`` take.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from catdog import vocabulary as vocab
from tracking.lineage import DECISION_TAG, manifest_dataset
from tracking.registry import (
    REGISTERED_NAMES,
    describe_version,
    log_test_metrics,
    tag_version,
    workspace_version,
)

__all__ = ["ALIAS", "CHAMPION_MODEL", "Decision", "choose_challenger", "promote_champion"]

CHAMPION_MODEL = "catdog"
ALIAS = "champion"

log = logging.getLogger("catdog")


def choose_challenger(results: Mapping[str, Mapping[str, float]]) -> str:
    """The model with the best test accuracy; ROC AUC, then the stage order, break ties."""
    order = {name: i for i, name in enumerate(vocab.MODELS)}
    return max(
        results,
        key=lambda m: (results[m]["accuracy"], results[m].get("roc_auc", 0.0), -order.get(m, 0)),
    )


@dataclass(frozen=True)
class Decision:
    """What promote-champion decided, and on what scores."""

    outcome: str  # first | moved | kept | unchanged
    challenger: str  # e.g. catdog-scratch/3
    challenger_accuracy: float
    incumbent: str = ""  # the version champion served before, e.g. catdog-scratch/2
    incumbent_accuracy: float = float("nan")
    test_images: int = 0

    def sentence(self) -> str:
        """The decision in words, for the registry and the logs."""
        challenger = f"{self.challenger} (test accuracy {self.challenger_accuracy:.3f})"
        incumbent = f"{self.incumbent} ({self.incumbent_accuracy:.3f})"
        on = f" on the same {self.test_images} test images" if self.test_images else ""
        return {
            "first": f"{challenger} is the first champion",
            "moved": f"{challenger} beat the champion {incumbent}{on}: promoted",
            "kept": f"the champion {incumbent} kept its place over {challenger}{on}",
            "unchanged": f"{challenger} is already the champion",
        }[self.outcome]

    def tags(self, serving: str) -> dict[str, str]:
        """Tags for the evaluate run and its execution."""
        stage, model = self.champion_stage, self.champion_model
        return {
            DECISION_TAG: self.outcome,
            "champion.decision.text": self.sentence(),
            "champion.challenger": self.challenger,
            "champion.challenger_accuracy": f"{self.challenger_accuracy:.6f}",
            "champion.incumbent": self.incumbent,
            "champion.incumbent_accuracy": f"{self.incumbent_accuracy:.6f}",
            "champion.stage": stage,
            "champion.model": model,
            "champion.serving": serving,
        }

    @property
    def champion_model(self) -> str:
        return self.incumbent if self.outcome == "kept" else self.challenger

    @property
    def champion_stage(self) -> str:
        registered = self.champion_model.rsplit("/", 1)[0]
        return next(s for s, n in REGISTERED_NAMES.items() if n == registered)


def _incumbent() -> Any | None:
    """The ``catdog`` version the alias ``champion`` names now, if any."""
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        return MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    return None


def _score(reference: str, test: Any, root: Path, threshold: float) -> float:
    """Test accuracy of a registered model on the test split, through catdog predict's path."""
    from catdog.metrics import compute_metrics  # Keras and TensorFlow below: evaluate only
    from catdog.predict import predict_images
    from tracking.models import load_model_reference

    model = load_model_reference(reference, root, root)
    files = [root / path for path in test["path"]]
    table, skipped = predict_images(model, files, threshold=threshold)
    if skipped:
        raise RuntimeError(f"{len(skipped)} test images could not be scored: {skipped[0]}")
    y_true = (test["label"] == "dog").to_numpy().astype(int)
    return compute_metrics(y_true, table["prob_dog"].to_numpy(), threshold)["accuracy"]


def _decide(challenger: Any, accuracy: float, test: Any, root: Path, threshold: float) -> Decision:
    name = f"{challenger.name}/{challenger.version}"
    incumbent = _incumbent()
    if incumbent is None:
        return Decision("first", name, accuracy)
    source = incumbent.tags.get("catdog.source", "")
    if source == name:
        return Decision("unchanged", name, accuracy, source, accuracy, len(test))
    try:
        held = _score(f"models:/{CHAMPION_MODEL}@{ALIAS}", test, root, threshold)
    except Exception as error:  # an incumbent that cannot be scored cannot defend its place
        log.warning("the champion %s could not be scored (%s): replacing it", source, error)
        return Decision("moved", name, accuracy, source, float("nan"), len(test))
    outcome = "moved" if accuracy > held else "kept"  # a tie keeps the incumbent
    return Decision(outcome, name, accuracy, source, held, len(test))


def promote_champion(
    root: Path, results: Mapping[str, Mapping[str, float]], test: Any, threshold: float
) -> dict[str, str]:
    """Decide the champion on the test split; called inside evaluate's MLflow run.

    Args:
        root: The workspace (its models, and the test images the manifest lists).
        results: Each model's test metrics, as evaluate wrote them.
        test: The test split's rows of the manifest (path, label).
        threshold: Probability at or above which a photo is called a dog.

    Returns:
        Tags for the evaluate run: the decision, both scores, and the champion afterwards.
    """
    stage = choose_challenger(results)
    challenger = workspace_version(stage, root)
    decision = _decide(challenger, results[stage]["accuracy"], test, root, threshold)
    client = MlflowClient()
    if decision.outcome in ("first", "moved"):
        _move_alias(REGISTERED_NAMES[stage], str(challenger.version))
        serving = _serving_version(challenger, stage, root, threshold, results[stage])
        client.set_registered_model_alias(CHAMPION_MODEL, ALIAS, serving)
        client.set_model_version_tag(CHAMPION_MODEL, serving, DECISION_TAG, decision.sentence())
    else:
        serving = str(_incumbent().version)  # type: ignore[union-attr]
    client.set_registered_model_tag(CHAMPION_MODEL, DECISION_TAG, decision.sentence())
    log.info("evaluate: %s", decision.sentence())
    mlflow.log_metrics(
        {
            "champion_challenger_accuracy": decision.challenger_accuracy,
            "champion_incumbent_accuracy": decision.incumbent_accuracy,
        }
    )
    return decision.tags(f"{CHAMPION_MODEL}/{serving}")


def _move_alias(name: str, version: str) -> None:
    """``champion`` on this version of ``name``, and off every other registered model."""
    client = MlflowClient()
    client.set_registered_model_alias(name, ALIAS, version)
    for other in REGISTERED_NAMES.values():
        if other != name:
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # none to remove
                client.delete_registered_model_alias(other, ALIAS)


def _serving_version(
    source: Any, stage: str, root: Path, threshold: float, metrics: Mapping[str, float]
) -> str:
    """The ``catdog`` version serving ``source`` (registered now, with the test ``metrics`` of
    the model it wraps, if it is not there yet)."""
    client = MlflowClient()
    existing = client.search_model_versions(
        f"name = '{CHAMPION_MODEL}' and tags.`catdog.source` = '{source.name}/{source.version}'",
        order_by=["version_number DESC"],
        max_results=1,
    )
    if existing:
        return str(existing[0].version)
    with tempfile.TemporaryDirectory(prefix="catdog-champion-") as scratch:
        info = _log_served_model(root, stage, threshold, Path(scratch))
    version = str(info.registered_model_version)
    tag_version(CHAMPION_MODEL, version, dict(source.tags))
    for key, value in {
        "catdog.source": f"{source.name}/{source.version}",
        "catdog.source_run_id": source.run_id,
        "catdog.stage": stage,
    }.items():
        client.set_model_version_tag(CHAMPION_MODEL, version, key, value)
    registered = client.get_model_version(CHAMPION_MODEL, version)
    test = manifest_dataset(root, "test")
    log_test_metrics(registered, metrics, test)
    describe_version(registered, metrics, len(test.df))
    return version


def _log_served_model(root: Path, stage: str, threshold: float, scratch: Path) -> Any:
    """Log the workspace's ``stage`` model wrapped to take image bytes, registered as catdog."""
    import io  # Keras and TensorFlow: only evaluate's process registers a champion

    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from PIL import Image

    from catdog.models import load_model, save_model
    from catdog.predict import images_model
    from tracking.models import pip_requirements, source_tags

    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, "image")]),
        outputs=Schema(
            [
                ColSpec(DataType.double, "prob_dog"),
                ColSpec(DataType.string, "label"),
                ColSpec(DataType.string, "error"),
            ]
        ),
    )
    photo = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 96, 64)).save(photo, format="JPEG")
    keras_path = save_model(
        images_model(load_model(root / vocab.model_path(stage)), root), scratch / "model.keras"
    )
    return mlflow.pyfunc.log_model(
        name="champion",
        python_model=str(Path(__file__).with_name("served_model.py")),
        artifacts={"keras_model": str(keras_path)},
        signature=signature,
        input_example=pd.DataFrame({"image": [photo.getvalue()]}),
        model_config={vocab.THRESHOLD_KEY: threshold},
        pip_requirements=pip_requirements(),
        registered_model_name=CHAMPION_MODEL,
        step=1,  # evaluate's metrics are at step 0: not this model's
        tags=source_tags(),
    )
