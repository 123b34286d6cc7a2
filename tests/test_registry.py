"""Registry: versions tagged with lineage, the champion alias moved by test accuracy, the served
champion taking image bytes and agreeing with ``catdog predict`` (real MLflow, SQLite store)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from catdog.predict import predict_images
from tests.conftest import write_image
from tracking.lineage import dvc_hash, lineage, parse_model_reference, render_lineage, run_lineage
from tracking.models import load_model_reference, log_keras_model
from tracking.registry import (
    ALIAS,
    CHAMPION_MODEL,
    REGISTERED_NAMES,
    choose_champion,
    promote_champion,
)


def tiny_image_model(path: Path, weight: float) -> Path:
    """Raw RGB pixels in, sigmoid out: mean brightness times ``weight`` (distinct per model)."""
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.Constant(weight),
        bias_initializer=keras.initializers.Constant(-weight / 2),
    )(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(path)
    return path


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


def register(stage: str, root: Path, weight: float) -> str:
    """What a model stage does: log and register its model, tagged with lineage."""
    path = tiny_image_model(root / f"models/{stage}.keras", weight)
    with mlflow.start_run(run_name=stage):
        model_hash = dvc_hash(path)
        mlflow.set_tags({"dvc.model": model_hash, "git.commit": "c0ffee", "dvc.data_raw": "r.dir"})
        mlflow.log_param(f"{stage}.epochs", 3)
        info = log_keras_model(path, name="model", registered_model_name=REGISTERED_NAMES[stage])
        MlflowClient().set_model_version_tag(
            REGISTERED_NAMES[stage], str(info.registered_model_version), "dvc.model", model_hash
        )
    return str(info.registered_model_version)


def aliases(name: str) -> list[str]:
    return list(MlflowClient().get_registered_model(name).aliases)


def test_choose_champion_by_accuracy_then_auc():
    results = {
        "classifier": {"accuracy": 0.8, "roc_auc": 0.9},
        "finetune": {"accuracy": 0.9, "roc_auc": 0.8},
        "scratch": {"accuracy": 0.9, "roc_auc": 0.85},
    }
    assert choose_champion(results) == "scratch"
    results["finetune"]["roc_auc"] = 0.85  # a full tie: the first in stage order wins
    assert choose_champion(results) == "finetune"


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


def test_champion_alias_moves_and_the_served_model_takes_image_bytes(store, tmp_path):
    root = tmp_path / "workspace"
    scratch_version = register("scratch", root, 4.0)
    finetune_version = register("finetune", root, -4.0)

    with mlflow.start_run(run_name="evaluate"):
        tags = promote_champion(
            root,
            {"finetune": {"accuracy": 0.6, "roc_auc": 0.7}, "scratch": {"accuracy": 0.8}},
            0.5,
        )
    assert tags["champion.model"] == f"catdog-scratch/{scratch_version}"
    assert aliases("catdog-scratch") == [ALIAS] and aliases("catdog-finetuned") == []
    served = MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    assert served.tags["catdog.source"] == f"catdog-scratch/{scratch_version}"
    assert served.tags["dvc.model"] == dvc_hash(root / "models/scratch.keras")

    # The served champion: image file bytes in, as MLflow's scoring server passes them.
    photos = [
        write_image(tmp_path / "p" / f"{i}.jpg", size=(50 + 10 * i, 40), seed=i) for i in range(3)
    ]
    (tmp_path / "p" / "broken.jpg").write_bytes(b"not an image")
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

    # finetune wins the next evaluation: the alias moves, and a new served version wraps it
    with mlflow.start_run(run_name="evaluate"):
        promote_champion(
            root,
            {"finetune": {"accuracy": 0.9}, "scratch": {"accuracy": 0.8}},
            0.5,
        )
    assert aliases("catdog-finetuned") == [ALIAS] and aliases("catdog-scratch") == []
    served = MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, ALIAS)
    assert served.tags["catdog.source"] == f"catdog-finetuned/{finetune_version}"
    assert str(served.version) == "2"

    # the same champion again: no new served version
    with mlflow.start_run(run_name="evaluate"):
        promote_champion(root, {"finetune": {"accuracy": 0.9}, "scratch": {"accuracy": 0.8}}, 0.5)
    versions = MlflowClient().search_model_versions(f"name = '{CHAMPION_MODEL}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]

    # lineage follows the served model to the run that trained the wrapped one
    info = lineage(store, "catdog@champion")
    assert info["wraps"]["name"] == "catdog-finetuned"
    assert info["run"]["stage"] == "finetune"
    assert info["git"]["commit"] == "c0ffee"
    assert info["data"]["data/raw"] == "r.dir"
    assert info["params"] == {"finetune.epochs": "3"}
    text = render_lineage(info)
    assert "c0ffee" in text and "finetune.epochs = 3" in text
    assert json.loads(run_lineage(store, "catdog@champion", as_json=True)) == info


def test_a_champion_trained_under_another_store_is_registered_from_the_workspace(store, tmp_path):
    root = tmp_path / "workspace"
    tiny_image_model(root / "models/scratch.keras", 2.0)  # no version of it in this store
    with mlflow.start_run(run_name="evaluate"):
        tags = promote_champion(root, {"scratch": {"accuracy": 0.7}}, 0.5)
    assert tags["champion.model"] == "catdog-scratch/1"
    version = MlflowClient().get_model_version("catdog-scratch", "1")
    assert version.tags["dvc.model"] == dvc_hash(root / "models/scratch.keras")
    assert aliases("catdog-scratch") == [ALIAS]


def test_lineage_of_an_unknown_model_says_so(store):
    with pytest.raises(ValueError, match="nope"):
        lineage(store, "nope@champion")
