"""Registry: versions tagged with lineage, the champion alias moved by test accuracy, the served
champion taking image bytes and agreeing with ``catdog predict`` (real MLflow, SQLite store)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from catdog.predict import predict_images
from catdog.tracking import machine
from catdog.tracking.champion import ALIAS, CHAMPION_MODEL, choose_challenger, promote_champion
from catdog.tracking.lineage import (
    dvc_hash,
    lineage,
    parse_model_reference,
    render_lineage,
    run_lineage,
)
from catdog.tracking.models import load_model_reference, log_keras_model
from catdog.tracking.registry import REGISTERED_NAMES
from tests.conftest import tiny_image_model, write_image


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = MlflowClient().create_experiment(
        "registry-test", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    yield uri
    mlflow.set_tracking_uri(None)


def register(stage: str, root: Path, weight: float, centre: float = 0.5) -> str:
    """What a model stage does: log and register its model, tagged with lineage."""
    path = tiny_image_model(root / f"models/{stage}.keras", weight, centre)
    with mlflow.start_run(run_name=stage):
        model_hash = dvc_hash(path)
        mlflow.set_tags({"dvc.model": model_hash, "git.commit": "c0ffee", "dvc.data_raw": "r.dir"})
        mlflow.log_param(f"{stage}.epochs", 3)
        model = keras.saving.load_model(path)
        info = log_keras_model(model, name=stage, registered_model_name=REGISTERED_NAMES[stage])
        MlflowClient().set_model_version_tag(
            REGISTERED_NAMES[stage], str(info.registered_model_version), "dvc.model", model_hash
        )
    return str(info.registered_model_version)


def dark_cats_bright_dogs(root: Path) -> pd.DataFrame:
    """Four dark cats and four bright dogs in the workspace: its manifest's test rows."""
    rows = []
    for i in range(4):
        for label, level in (("cat", 40), ("dog", 210)):
            path = root / "data/raw" / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), level + 5 * i, dtype=np.uint8)).save(path)
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
            rows.append({"path": path.relative_to(root).as_posix(), "label": label})
            rows[-1].update(split="test", sha256=sha256)
    manifest = root / "data/split/manifest.csv"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return pd.DataFrame(rows)[["path", "label"]]


def aliases(name: str) -> list[str]:
    return list(MlflowClient().get_registered_model(name).aliases)


def test_choose_challenger_by_accuracy_then_auc():
    results = {
        "classifier": {"accuracy": 0.8, "roc_auc": 0.9},
        "finetune": {"accuracy": 0.9, "roc_auc": 0.8},
        "scratch": {"accuracy": 0.9, "roc_auc": 0.85},
    }
    assert choose_challenger(results) == "scratch"
    results["finetune"]["roc_auc"] = 0.85  # a full tie: the first in stage order wins
    assert choose_challenger(results) == "finetune"


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        ("catdog@champion", ("catdog", "champion", None)),
        ("models:/catdog-scratch/3", ("catdog-scratch", None, "3")),
        ("catdog-finetuned", ("catdog-finetuned", None, None)),
    ],
)
def test_parse_model_reference(reference, parsed):
    assert parse_model_reference(reference) == parsed


def test_parse_model_reference_rejects_paths_with_a_hint():
    with pytest.raises(ValueError, match="NAME@ALIAS"):
        parse_model_reference("models/finetune.keras")


def test_the_champion_moves_only_to_a_model_that_beats_it_on_this_test_set(store, tmp_path):
    root = tmp_path / "workspace"
    test = dark_cats_bright_dogs(root)
    register("scratch", root, -4.0)  # always wrong
    with mlflow.start_run(run_name="evaluate 1"):
        # evaluate's remembered figures choose the challenger; its score is computed here
        first = promote_champion(root, {"scratch": {"accuracy": 0.9}}, test, 0.5)
    assert first["champion.decision"] == "first" and first["champion.model"] == "catdog-scratch/1"
    assert float(first["champion.challenger_accuracy"]) == 0.0

    better = register("scratch", root, 4.0)  # always right: 8 images to 0, p = 1/256
    with mlflow.start_run(run_name="evaluate 2") as run:
        moved = promote_champion(root, {"scratch": {"accuracy": 0.1}}, test, 0.5)
    assert moved["champion.decision"] == "moved"
    assert (moved["champion.incumbent"], moved["champion.model"]) == (
        "catdog-scratch/1",
        f"catdog-scratch/{better}",
    )
    # both scored here: not the 0.9 the champion was registered with, not the 0.1 passed now
    assert float(moved["champion.incumbent_accuracy"]) == 0.0
    assert float(moved["champion.challenger_accuracy"]) == 1.0
    assert moved["champion.rule"] == "paired-test"
    assert float(moved["champion.p_value"]) == pytest.approx(1 / 256)
    assert moved["champion.discordant"] == "8 challenger, 0 champion"
    logged_metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert logged_metrics["champion_challenger_accuracy"] == 1.0
    assert logged_metrics["champion_p_value"] == pytest.approx(1 / 256)
    served = MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    assert served.tags["catdog.source"] == f"catdog-scratch/{better}"
    assert "p = 0.00391 < 0.05" in served.tags["champion.decision"]
    # the served model shows the test metrics of the model it wraps, on the test split
    logged = MlflowClient().get_logged_model(served.source.removeprefix("models:/"))
    assert [(m.key, m.value, m.dataset_name) for m in logged.metrics] == [
        ("test_accuracy", 0.1, "catdog-test-split")
    ]
    assert served.description.startswith("Test accuracy 0.100")

    register("finetune", root, -4.0)  # a worse execution: the champion stays where it is
    with mlflow.start_run(run_name="evaluate 3"):
        kept = promote_champion(root, {"finetune": {"accuracy": 1.0}}, test, 0.5)
    assert kept["champion.decision"] == "kept"
    assert kept["champion.model"] == f"catdog-scratch/{better}"
    assert float(kept["champion.incumbent_accuracy"]) == 1.0
    assert MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS).version == (
        served.version
    )
    assert aliases("catdog-scratch") == [ALIAS] and aliases("catdog-finetuned") == []
    decision = MlflowClient().get_registered_model(CHAMPION_MODEL).tags["champion.decision"]
    assert decision == (
        f"the champion catdog-scratch/{better} (1.000) kept its place over catdog-finetuned/1 "
        "(test accuracy 0.000) on the same 8 test images: 0 images only the challenger got "
        "right, 8 only the champion; one-sided exact McNemar p = 1 ≥ 0.05 (not better)"
    )
    # the challenger that was kept out carries the decision too
    assert (
        MlflowClient().get_model_version("catdog-finetuned", "1").tags["champion.decision"]
        == decision
    )
    info = lineage(store, "catdog@champion")
    assert info["champion"]["latest"] == decision
    assert "beat the champion catdog-scratch/1 (0.000)" in info["champion"]["promoted"]
    assert f"latest:    {decision}" in render_lineage(info)

    register("finetune", root, 4.0)  # as good as the champion: a tie keeps the incumbent
    with mlflow.start_run(run_name="evaluate 4"):
        tie = promote_champion(root, {"finetune": {"accuracy": 1.0}}, test, 0.5)
    assert tie["champion.decision"] == "kept"


def test_a_gain_within_the_noise_keeps_the_champion_unless_the_gate_is_any_gain(store, tmp_path):
    root = tmp_path / "workspace"
    test = dark_cats_bright_dogs(root)
    register("scratch", root, 4.0, centre=0.833)  # 7 of 8: the darkest dog is called a cat
    with mlflow.start_run(run_name="evaluate 1"):
        promote_champion(root, {"scratch": {"accuracy": 0.875}}, test, 0.5)
    register("finetune", root, 4.0)  # 8 of 8: one image better, p = 1/2
    with mlflow.start_run(run_name="evaluate 2"):
        kept = promote_champion(root, {"finetune": {"accuracy": 1.0}}, test, 0.5)
    assert kept["champion.decision"] == "kept"
    assert (
        float(kept["champion.challenger_accuracy"]),
        float(kept["champion.incumbent_accuracy"]),
    ) == (1.0, 0.875)
    assert float(kept["champion.p_value"]) == 0.5
    assert "(a gain within the noise)" in kept["champion.decision.text"]
    assert aliases("catdog-scratch") == [ALIAS]
    with mlflow.start_run(run_name="evaluate 3"):
        moved = promote_champion(root, {"finetune": {"accuracy": 1.0}}, test, 0.5, gate="any-gain")
    assert moved["champion.decision"] == "moved" and moved["champion.rule"] == "any-gain"
    assert aliases("catdog-finetuned") == [ALIAS]


def _lose_the_champions_model() -> None:
    """Delete the files of the model the alias serves: it can no longer be loaded."""
    served = MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    logged = MlflowClient().get_logged_model(served.source.removeprefix("models:/"))
    shutil.rmtree(Path(logged.artifact_location.removeprefix("file://")))


@pytest.mark.parametrize(
    ("recorded", "outcome"),
    [
        (None, "kept"),  # nothing to judge it by: never waved through
        ({"accuracy_ci_low": 0.4, "accuracy_ci_high": 0.8}, "kept"),  # intervals overlap
        ({"accuracy_ci_low": 0.2, "accuracy_ci_high": 0.5}, "moved"),  # [0.676, 1] lies above
    ],
)
def test_a_champion_that_cannot_be_scored_is_judged_on_its_record(
    store, tmp_path, recorded, outcome
):
    root = tmp_path / "workspace"
    test = dark_cats_bright_dogs(root)
    register("scratch", root, -4.0)
    with mlflow.start_run(run_name="evaluate 1"):
        promote_champion(root, {"scratch": {"accuracy": 0.6, **(recorded or {})}}, test, 0.5)
    _lose_the_champions_model()
    register("finetune", root, 4.0)
    with mlflow.start_run(run_name="evaluate 2"):
        tags = promote_champion(root, {"finetune": {"accuracy": 1.0}}, test, 0.5)
    assert tags["champion.decision"] == outcome
    assert tags["champion.rule"] == ("unscored" if recorded is None else "intervals")
    assert "could not be scored here" in tags["champion.decision.text"]
    assert aliases("catdog-finetuned" if outcome == "moved" else "catdog-scratch") == [ALIAS]


def test_the_served_champion_takes_image_bytes_as_catdog_predict_does(store, tmp_path):
    root = tmp_path / "workspace"
    scratch_version = register("scratch", root, 4.0)
    with mlflow.start_run(run_name="evaluate"):
        test = dark_cats_bright_dogs(root)
        tags = promote_champion(root, {"scratch": {"accuracy": 0.8}}, test, 0.5)
    assert tags["champion.model"] == f"catdog-scratch/{scratch_version}"
    served = MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    assert served.tags["dvc.model"] == dvc_hash(root / "models/scratch.keras")

    # The served champion: image file bytes in, as MLflow's scoring server passes them.
    photos = [
        write_image(tmp_path / "p" / f"{i}.jpg", size=(50 + 10 * i, 40), seed=i) for i in range(3)
    ]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{CHAMPION_MODEL}@{ALIAS}")
    inputs = [p.read_bytes() for p in photos] + [b"not an image"]
    served_out = pyfunc.predict(pd.DataFrame({"image": inputs}))
    expected, _ = predict_images(keras.saving.load_model(root / "models/scratch.keras"), photos)
    np.testing.assert_allclose(served_out["prob_dog"][:3].astype(float), expected["prob_dog"])
    assert list(served_out["label"][:3]) == list(expected["label"])
    assert served_out["prob_dog"][3] is None and "not an image" in served_out["error"][3]
    # base64 text (what a JSON client sends) decodes to the same answer
    as_text = pyfunc.predict(
        pd.DataFrame({"image": [base64.b64encode(p.read_bytes()).decode() for p in photos]})
    )
    np.testing.assert_allclose(as_text["prob_dog"].astype(float), expected["prob_dog"])
    # and catdog predict takes the same reference
    model = load_model_reference(f"models:/{CHAMPION_MODEL}@{ALIAS}", root, tmp_path)
    again, _ = predict_images(model, photos)
    pd.testing.assert_frame_equal(again, expected)

    # lineage follows the served model to the run that trained the wrapped one
    info = lineage(store, "catdog@champion")
    assert info["wraps"]["name"] == "catdog-scratch"
    assert info["run"]["stage"] == "scratch"
    assert info["git"]["commit"] == "c0ffee"
    assert info["data"]["data/raw"] == "r.dir"
    assert info["params"] == {"scratch.epochs": "3"}
    text = render_lineage(info)
    assert "c0ffee" in text and "scratch.epochs = 3" in text
    assert json.loads(run_lineage(store, "catdog@champion", as_json=True)) == info


def test_a_model_logged_after_the_machine_was_sampled_carries_none_of_its_samples(
    store, tmp_path, monkeypatch
):
    """System metrics are sampled on steps 0, 1, 2...; MLflow copies a run's metrics at the
    model's step onto the model, so a stage's model must not carry ``system/*`` as results."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    path = tiny_image_model(tmp_path / "models/scratch.keras", 2.0)
    with mlflow.start_run(run_name="scratch") as run:
        machine.watch(run.info.run_id)

        def sampled() -> list:
            return MlflowClient().get_metric_history(
                run.info.run_id, "system/cpu_utilization_percentage"
            )

        deadline = time.monotonic() + 60
        while len(sampled()) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        mlflow.log_metric("accuracy", 0.9)
        info = log_keras_model(keras.saving.load_model(path), name="scratch", first_free=1)
    samples = {sample.step for sample in sampled()}
    assert len(samples) >= 4  # the run keeps them: steps 0, 1, 2, 3...
    model = MlflowClient().get_logged_model(info.model_id)
    assert [metric.key for metric in model.metrics or []] == []


def test_a_champion_trained_under_another_store_is_registered_from_the_workspace(store, tmp_path):
    root = tmp_path / "workspace"
    tiny_image_model(root / "models/scratch.keras", 2.0)  # no version of it in this store
    with mlflow.start_run(run_name="evaluate"):
        tags = promote_champion(
            root, {"scratch": {"accuracy": 0.7}}, dark_cats_bright_dogs(root), 0.5
        )
    assert tags["champion.model"] == "catdog-scratch/1"
    version = MlflowClient().get_model_version("catdog-scratch", "1")
    assert version.tags["dvc.model"] == dvc_hash(root / "models/scratch.keras")
    assert aliases("catdog-scratch") == [ALIAS]


def test_lineage_of_an_unknown_model_says_so(store):
    with pytest.raises(ValueError, match="nope"):
        lineage(store, "nope@champion")
