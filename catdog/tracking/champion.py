"""The champion: the model served as ``models:/catdog@champion``, which never moves on luck.

Evaluate's ``promote-champion`` step takes the best of this execution's models (test accuracy,
ROC AUC breaking ties) as the challenger and scores it and the current champion here, on the same
test images, through ``catdog predict``'s input path. The gate (``evaluate.champion_gate``):

* ``paired-test`` (the default): the challenger replaces the champion only when the images it gets
  right and the champion wrong outnumber the reverse by more than luck allows: McNemar's exact
  test, one-sided, ``p < evaluate.champion_alpha`` (0.05). A gain of a point or two on 60 images
  keeps the champion.
* ``any-gain``: any higher accuracy moves it (a tie keeps the incumbent).

A champion that cannot be scored here (its model missing or unreadable) is judged on what it
scored on its own test images: the challenger moves it only when the lower end of its 95%
interval lies above the upper end of the champion's. Without a recorded interval the champion is
kept, and the decision says how to move it by hand. Every decision, moved or kept, is recorded with
its numbers and p-value: on the evaluate run and its execution (tags and metrics), on the
challenger's version and, when it moved, the new ``catdog`` version (tag ``champion.decision``),
on the ``catdog`` registered model (the latest decision), and in one log line; ``catdog lineage
catdog@champion`` shows them. Promoting by hand stays possible with MLflow's own alias commands.

``catdog`` versions are the champion wrapped to take image file bytes
(:mod:`tracking.served_model`): what ``catdog predict`` and ``mlflow models serve`` take.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from catdog import vocabulary as vocab
from catdog.intervals import mcnemar_exact, wilson_interval
from catdog.stage_table import MODELS
from catdog.tracking import machine
from catdog.tracking.lineage import DECISION_TAG, manifest_dataset
from catdog.tracking.registry import (
    REGISTERED_NAMES,
    TEST_PREFIX,
    describe_version,
    log_test_metrics,
    logged_model_id,
    tag_version,
    workspace_version,
)

__all__ = [
    "ALIAS",
    "CHAMPION_MODEL",
    "GATES",
    "Decision",
    "choose_challenger",
    "promote_champion",
]

CHAMPION_MODEL = "catdog"
ALIAS = "champion"
GATES = ("paired-test", "any-gain")

log = logging.getLogger("catdog")


def choose_challenger(results: Mapping[str, Mapping[str, float]]) -> str:
    """The model with the best test accuracy; ROC AUC, then the stage order, break ties."""
    order = {name: i for i, name in enumerate(MODELS)}
    return max(
        results,
        key=lambda m: (results[m]["accuracy"], results[m].get("roc_auc", 0.0), -order.get(m, 0)),
    )


@dataclass(frozen=True)
class Decision:
    """What promote-champion decided, on what scores, by which rule."""

    outcome: str  # first | moved | kept | unchanged
    challenger: str  # e.g. catdog-scratch/3
    challenger_accuracy: float
    incumbent: str = ""  # the version champion served before, e.g. catdog-scratch/2
    incumbent_accuracy: float = float("nan")
    test_images: int = 0
    rule: str = ""  # paired-test | any-gain | intervals | unscored
    p_value: float = float("nan")  # one-sided McNemar: is the challenger better?
    challenger_only: int = 0  # images only the challenger got right
    incumbent_only: int = 0  # images only the champion got right
    why: str = ""  # the numbers behind the decision, in words

    def sentence(self) -> str:
        """The decision in words, for the registry and the logs."""
        challenger = f"{self.challenger} (test accuracy {self.challenger_accuracy:.3f})"
        incumbent = f"{self.incumbent} ({self.incumbent_accuracy:.3f})"
        on = f" on the same {self.test_images} test images" if self.rule != "intervals" else ""
        why = f": {self.why}" if self.why else ""
        return {
            "first": f"{challenger} is the first champion",
            "moved": f"{challenger} beat the champion {incumbent}{on}, promoted{why}",
            "kept": f"the champion {incumbent} kept its place over {challenger}{on}{why}",
            "unchanged": f"{challenger} is already the champion",
        }[self.outcome]

    def tags(self, serving: str) -> dict[str, str]:
        """Tags for the evaluate run and its execution."""
        return {
            DECISION_TAG: self.outcome,
            "champion.decision.text": self.sentence(),
            "champion.rule": self.rule,
            "champion.p_value": f"{self.p_value:.6g}",
            "champion.discordant": f"{self.challenger_only} challenger, "
            f"{self.incumbent_only} champion",
            "champion.challenger": self.challenger,
            "champion.challenger_accuracy": f"{self.challenger_accuracy:.6f}",
            "champion.incumbent": self.incumbent,
            "champion.incumbent_accuracy": f"{self.incumbent_accuracy:.6f}",
            "champion.stage": self.champion_stage,
            "champion.model": self.champion_model,
            "champion.serving": serving,
        }

    def metrics(self) -> dict[str, float]:
        """The decision's numbers as metrics of the evaluate run (finite ones only)."""
        values = {
            "champion_challenger_accuracy": self.challenger_accuracy,
            "champion_incumbent_accuracy": self.incumbent_accuracy,
            "champion_p_value": self.p_value,
        }
        return {k: v for k, v in values.items() if math.isfinite(v)}

    @property
    def moves(self) -> bool:
        return self.outcome in ("first", "moved")

    @property
    def champion_model(self) -> str:
        return self.challenger if self.moves or self.outcome == "unchanged" else self.incumbent

    @property
    def champion_stage(self) -> str:
        registered = self.champion_model.rsplit("/", 1)[0]
        return next(s for s, n in REGISTERED_NAMES.items() if n == registered)


def _incumbent() -> Any | None:
    """The ``catdog`` version the alias ``champion`` names now, if any."""
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        return MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    return None


def _answers(reference: str, test: Any, root: Path, threshold: float) -> np.ndarray:
    """Whether a model gets each test image right, through catdog predict's input path."""
    from catdog.predict import predict_images  # Keras and TensorFlow below: evaluate only
    from catdog.tracking.models import load_model_reference

    model = load_model_reference(reference, root, root)
    files = [root / path for path in test["path"]]
    table, skipped = predict_images(model, files, threshold=threshold)
    if skipped:
        raise RuntimeError(f"{len(skipped)} test images could not be scored: {skipped[0]}")
    return table["label"].to_numpy() == test["label"].to_numpy()


def _paired(
    name: str, mine: np.ndarray, source: str, theirs: np.ndarray, gate: str, alpha: float
) -> Decision:
    """The decision on the same images, by McNemar's exact test or by any gain."""
    wins, losses = int((mine & ~theirs).sum()), int((~mine & theirs).sum())
    p_value = mcnemar_exact(wins, losses, "greater")
    mine_accuracy, their_accuracy = float(mine.mean()), float(theirs.mean())
    if gate == "any-gain":
        moved = mine_accuracy > their_accuracy  # a tie keeps the incumbent
        why = "any-gain rule: " + ("more accurate" if moved else "not more accurate")
    else:
        moved = p_value < alpha
        verdict = (
            "" if moved else " (a gain within the noise)" if wins > losses else " (not better)"
        )
        why = (
            f"{wins} images only the challenger got right, {losses} only the champion; "
            f"one-sided exact McNemar p = {p_value:.3g} {'<' if moved else '≥'} {alpha:g}{verdict}"
        )
    return Decision(
        "moved" if moved else "kept",
        name,
        mine_accuracy,
        source,
        their_accuracy,
        len(mine),
        gate,
        p_value,
        wins,
        losses,
        why,
    )


def _recorded_interval(version: Any) -> tuple[float, float, float] | None:
    """The champion's test accuracy and 95% interval, as evaluate recorded them on its model."""
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        metrics = MlflowClient().get_logged_model(logged_model_id(version)).metrics or []
        found = {m.key: m.value for m in metrics}
        keys = [f"{TEST_PREFIX}accuracy{s}" for s in ("", "_ci_low", "_ci_high")]
        if all(k in found for k in keys):
            return tuple(float(found[k]) for k in keys)  # type: ignore[return-value]
    return None


def _unscorable(name: str, mine: np.ndarray, incumbent: Any, error: Exception) -> Decision:
    """The decision when the champion cannot be scored here: intervals, or keep it."""
    source = incumbent.tags.get("catdog.source", "")
    accuracy = float(mine.mean())
    low, high = wilson_interval(int(mine.sum()), len(mine))
    reason = f"the champion could not be scored here ({str(error).splitlines()[0][:200]})"
    recorded = _recorded_interval(incumbent)
    if recorded is None:
        why = (
            f"{reason} and has no recorded interval to compare with; if it is gone for good, "
            f"move the alias by hand (MlflowClient().set_registered_model_alias)"
        )
        return Decision("kept", name, accuracy, source, math.nan, len(mine), "unscored", why=why)
    held, held_low, held_high = recorded
    moved = low > held_high
    why = (
        f"{reason}; on its own test images it scored {held:.3f} [{held_low:.3f}, {held_high:.3f}]"
        f", and the challenger's 95% interval [{low:.3f}, {high:.3f}] "
        + ("lies above it" if moved else "does not lie above it")
    )
    return Decision(
        "moved" if moved else "kept", name, accuracy, source, held, len(mine), "intervals", why=why
    )


def _decide(
    challenger: Any,
    mine: np.ndarray,
    test: Any,
    root: Path,
    threshold: float,
    gate: str,
    alpha: float,
) -> Decision:
    name = f"{challenger.name}/{challenger.version}"
    incumbent = _incumbent()
    accuracy = float(mine.mean())
    if incumbent is None:
        return Decision("first", name, accuracy, test_images=len(mine), rule=gate)
    source = incumbent.tags.get("catdog.source", "")
    if source == name:
        return Decision("unchanged", name, accuracy, source, accuracy, len(mine), gate)
    try:
        theirs = _answers(f"models:/{CHAMPION_MODEL}@{ALIAS}", test, root, threshold)
    except Exception as error:  # missing or unreadable: judged on its record, never waved by
        log.warning("the champion %s could not be scored: %s", source, error)
        return _unscorable(name, mine, incumbent, error)
    return _paired(name, mine, source, theirs, gate, alpha)


def promote_champion(
    root: Path,
    results: Mapping[str, Mapping[str, float]],
    test: Any,
    threshold: float,
    *,
    gate: str = "paired-test",
    alpha: float = 0.05,
) -> dict[str, str]:
    """Decide the champion on the test split; called inside evaluate's MLflow run.

    Args:
        root: The workspace (its models, and the test images the manifest lists).
        results: Each model's test metrics, as evaluate wrote them: they choose the challenger
            only; both models are scored here.
        test: The test split's rows of the manifest (path, label).
        threshold: Probability at or above which a photo is called a dog.
        gate: ``paired-test`` or ``any-gain`` (see the module docstring).
        alpha: The paired test's one-sided level.

    Returns:
        Tags for the evaluate run (:meth:`Decision.tags`): the decision in words, the rule, both
        scores, the discordant images, the p-value and the champion afterwards. The decision's
        numbers are logged as metrics of the active run.
    """
    if gate not in GATES:
        raise ValueError(f"evaluate.champion_gate must be one of {', '.join(GATES)}, not {gate!r}")
    stage = choose_challenger(results)
    challenger = workspace_version(stage, root)
    mine = _answers(str(root / vocab.model_path(stage)), test, root, threshold)
    decision = _decide(challenger, mine, test, root, threshold, gate, alpha)
    client = MlflowClient()
    if decision.moves:
        _move_alias(REGISTERED_NAMES[stage], str(challenger.version))
        serving = _serving_version(challenger, stage, root, threshold, results[stage])
        client.set_registered_model_alias(CHAMPION_MODEL, ALIAS, serving)
        client.set_model_version_tag(CHAMPION_MODEL, serving, DECISION_TAG, decision.sentence())
    else:
        serving = str(_incumbent().version)  # type: ignore[union-attr]
    client.set_model_version_tag(
        challenger.name, str(challenger.version), DECISION_TAG, decision.sentence()
    )
    client.set_registered_model_tag(CHAMPION_MODEL, DECISION_TAG, decision.sentence())
    mlflow.log_metrics(decision.metrics())
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
    from catdog.tracking.models import pip_requirements, source_tags

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
        step=machine.model_step(mlflow.active_run().info.run_id, 1),  # past evaluate's metrics
        tags=source_tags(),
    )
