"""catdog score: a model measured on labelled photos, with 95% intervals, logged to MLflow; and
catdog ui opening the project's experiment in MLflow's model-training view."""

from __future__ import annotations

import math
import os
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from catdog.cli import commands
from catdog.cli.main import main
from catdog.intervals import format_interval, noise_sentence, wilson_interval
from catdog.score import find_photos, render_report, score_photos
from catdog.sources import prepare_source
from catdog.tracking.lineage import dvc_hash
from catdog.tracking.models import log_keras_model
from tests.conftest import REPO, tiny_image_model

REPORT_PHOTOS = Path(
    os.environ.get(
        "CATDOG_REPORT_PHOTOS", REPO.parent / "shared" / "data" / "dogs-vs-cats-200px" / "report"
    )
)
# 6 of 8 right: one bright cat and one dark dog fool a model that calls bright photos dogs
SIX_OF_EIGHT = {
    "cat.0.png": 30,
    "cat.1.png": 45,
    "cat.2.png": 60,
    "cat.3.png": 230,  # wrong, p(dog) about 0.99
    "dog.0.png": 200,
    "dog.1.png": 215,
    "dog.2.png": 230,
    "dog.3.png": 20,  # wrong, p(dog) about 0.006: the most confident mistake
}


def write_photos(folder: Path, levels: dict[str, int]) -> Path:
    for name, level in levels.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), level, dtype=np.uint8)).save(path)
    return folder


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_image_model(tmp_path_factory.mktemp("model") / "bright.keras", 4.0)


@pytest.fixture(scope="module")
def model(model_path: Path) -> keras.Model:
    return keras.saving.load_model(model_path, safe_mode=True)


def score_folder(model: keras.Model, folder: Path):
    return score_photos(model, find_photos(prepare_source(folder, folder.parent / "unused")))


def test_six_of_eight_right_gives_wilson_intervals_and_the_worst_mistake_first(tmp_path, model):
    result = score_folder(model, write_photos(tmp_path / "photos", SIX_OF_EIGHT))
    low, high = wilson_interval(6, 8)
    assert (result.metrics["accuracy"], result.metrics["accuracy_ci_low"]) == (0.75, low)
    assert result.metrics["accuracy_ci_high"] == high
    assert result.confusion == ((3, 1), (1, 3))
    cat, dog = result.recalls["cat"], result.recalls["dog"]
    assert (cat.right, cat.total, dog.right, dog.total) == (3, 4, 3, 4)
    assert (cat.low, cat.high) == wilson_interval(3, 4)
    assert list(result.mistakes["path"]) == ["dog.3.png", "cat.3.png"]
    assert list(result.photos.columns) == ["path", "actual", "predicted", "prob_dog"]
    assert list(result.photos["predicted"]) == ["cat"] * 3 + ["dog"] * 4 + ["cat"]
    lines = render_report(result).splitlines()
    assert lines[0] == "accuracy 75.0% [40.9, 92.9] on 8 photos (4 cats, 4 dogs)"
    assert lines[0] == f"accuracy {format_interval(0.75, low, high)} on 8 photos (4 cats, 4 dogs)"
    recall = format_interval(0.75, *wilson_interval(3, 4))
    assert lines[1] == f"cat recall {recall}: 3 of 4 cats called cat"
    assert lines[2].startswith("dog recall 75.0% [")
    assert lines[3].startswith("confusion matrix at threshold 0.5")
    assert lines[5].split() == ["cat", "3", "1"] and lines[6].split() == ["dog", "1", "3"]
    # 9.5 of the 16 (cat, dog) pairs have the dog brighter (the two 230s tie: half a pair)
    assert lines[7].startswith("ROC AUC 0.594 [")
    assert lines[8] == "worst mistakes (2 of 2 wrong, most confident first)"
    assert lines[9] == "  dog.3.png  actual dog, p(dog) 0.006"
    assert lines[-2:] == ["no file skipped", noise_sentence(8, what="photos")]


def hostile_files(folder: Path) -> dict[str, str]:
    """Files that must be skipped, and a word of the reason each must give."""
    jpeg = folder / "cat.7.jpg"
    Image.fromarray(np.full((32, 32, 3), 40, dtype=np.uint8)).save(jpeg)
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 3])  # truncated
    (folder / "dog.8.jpg").write_text("I am not a photo")
    (folder / "dog.9.jpg").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    (folder / "holiday.jpg").write_bytes(data)  # no label
    (folder / "notes.txt").write_text("cats are dark")
    return {
        "cat.7.jpg": "cannot decode",
        "dog.8.jpg": "not an image",
        "dog.9.jpg": "empty file",
        ".DS_Store": "hidden file",
        "holiday.jpg": "no recognisable label",
        "notes.txt": "not an image file name",
    }


def test_hostile_and_unlabelled_files_are_skipped_with_a_reason_not_scored(tmp_path, model):
    folder = write_photos(tmp_path / "photos", SIX_OF_EIGHT)
    expected = hostile_files(folder)
    result = score_folder(model, folder)
    assert result.images == 8 and result.metrics["accuracy"] == 0.75
    reasons = dict(result.skipped)
    assert sorted(reasons) == sorted(expected)
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])
    assert "6 files skipped, not scored" in render_report(result)


def test_one_class_is_scored_and_the_report_says_what_is_undefined(tmp_path, model):
    cats = {name: level for name, level in SIX_OF_EIGHT.items() if name.startswith("cat")}
    result = score_folder(model, write_photos(tmp_path / "only_cats", cats))
    assert result.missing_class == "dog" and result.images == 4
    assert math.isnan(result.metrics["roc_auc"]) and math.isnan(result.metrics["recall"])
    flat = result.flat_metrics()
    assert flat["cat_recall"] == 0.75 and math.isnan(flat["dog_recall"])
    text = render_report(result)
    assert text.startswith("accuracy 75.0% [30.1, 95.4] on 4 photos (4 cats, 0 dogs)\n")
    assert "dog recall n/a (no dog photo)" in text
    assert "only cats here: dog recall and ROC AUC are undefined" in text
    assert "ROC AUC n/a" in text


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["score", "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in (
        "--model REF",
        "models:/NAME@ALIAS",
        "--no-log",
        "--out CSV",
        "outside (0, 1)",
        "catdog score: skipped PATH: reason",
        "accuracy 83.6% [81.9, 85.2] on 2,000 photos (1,000 cats, 1,000 dogs)",
        "catdog.score.<folder name>",
    ):
        assert words in text, words


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The command runs in an empty folder: no workspace, no params.yaml, no store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'never.db'}")
    return tmp_path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("catdog: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("setup", "threshold", "words"),
    [
        ("missing", "0.5", ["missing", "no such folder"]),
        ("empty", "0.5", ["empty", "no file in it", "cats/ dogs/"]),
        ("unlabelled", "0.5", ["unlabelled", "none of its 2 files is a labelled photo"]),
        ("text", "0.5", ["notes.txt", "neither a folder nor a .zip"]),
        ("photos", "1.5", ["--threshold 1.5", "between 0 and 1"]),
        ("photos", "0", ["--threshold 0", "between 0 and 1"]),
    ],
)
def test_bad_input_is_one_error_line_before_any_work(
    in_tmp, capsys, model_path, setup, threshold, words
):
    (in_tmp / "empty").mkdir()
    write_photos(in_tmp / "unlabelled", {"holiday.png": 40, "beach.png": 200})
    (in_tmp / "notes.txt").write_text("not photos")
    write_photos(in_tmp / "photos", SIX_OF_EIGHT)
    source = {"text": "notes.txt"}.get(setup, setup)
    argv = ["score", source, "--model", str(model_path), "--threshold", threshold, "--no-log"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    for word in words:
        assert word in line, line
    assert not (in_tmp / "never.db").exists()


def test_unreadable_photos_and_a_bad_model_are_one_error_line(in_tmp, capsys, model_path):
    folder = in_tmp / "broken"
    folder.mkdir()
    (folder / "cat.1.jpg").write_bytes(b"")
    (folder / "dog.1.jpg").write_text("not a photo")
    assert main(["score", "broken", "--model", str(model_path), "--no-log"]) == 2
    line = one_error_line(capsys)
    assert "none of its 2 labelled photos can be read" in line and "cat.1.jpg" in line
    write_photos(in_tmp / "photos", SIX_OF_EIGHT)
    assert main(["score", "photos", "--model", "models/missing.keras", "--no-log"]) == 2
    assert "--model models/missing.keras: no such file" in one_error_line(capsys)


def test_a_zip_is_scored_with_skipped_lines_on_stderr_and_the_csv_where_asked(
    in_tmp, capsys, model_path
):
    by_folder = {f"{name[:3]}s/{name[4:]}": level for name, level in SIX_OF_EIGHT.items()}
    folder = write_photos(in_tmp / "tree", by_folder)  # cats/0.png ... dogs/3.png
    (folder / "cats" / "9.jpg").write_bytes(b"")
    with zipfile.ZipFile(in_tmp / "photos.zip", "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())
    out = in_tmp / "out" / "photos.csv"
    argv = ["score", "photos.zip", "--model", str(model_path), "--out", str(out), "--no-log"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("accuracy 75.0% [40.9, 92.9] on 8 photos (4 cats, 4 dogs)\n")
    assert "catdog score: skipped photos.zip/cats/9.jpg: empty file (0 bytes)\n" in captured.err
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "actual", "predicted", "prob_dog"]
    assert table["path"].iloc[0] == "photos.zip/cats/0.png" and len(table) == 8
    assert not (in_tmp / "never.db").exists()  # --no-log: nothing logged


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A temporary SQLite MLflow store; the command runs in tmp_path (no params.yaml)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def register_model(model: keras.Model, tmp_path: Path) -> tuple[str, str]:
    """Log and register the model as catdog-scratch; return its run id and version."""
    experiment = MlflowClient().create_experiment(
        "training", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    with mlflow.start_run() as run:
        info = log_keras_model(model, name="scratch", registered_model_name="catdog-scratch")
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias("catdog-scratch", "champion", version)
    return run.info.run_id, version


def logged_model(version: str):
    """The logged model a version of catdog-scratch was made from (its source names it)."""
    source = MlflowClient().get_model_version("catdog-scratch", version).source
    return MlflowClient().get_logged_model(source.removeprefix("models:/"))


def logged_score_run(name: str):
    client = MlflowClient()
    experiment = client.get_experiment_by_name("catdog")
    runs = client.search_runs([experiment.experiment_id], f"tags.`catdog.source` LIKE '%/{name}'")
    assert len(runs) == 1
    return client.get_run(runs[0].info.run_id)  # with its model inputs, which search leaves out


def test_a_registered_model_gets_the_score_on_its_logged_model_and_version(
    store, tmp_path, capsys, model, model_path
):
    _, version = register_model(model, tmp_path)
    folder = write_photos(tmp_path / "new_photos", SIX_OF_EIGHT)
    reference = "models:/catdog-scratch@champion"
    assert main(["score", "new_photos", "--model", reference]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    run = logged_score_run("new_photos")
    assert run.info.run_name == "score · new_photos"
    assert run.data.tags["catdog.kind"] == "score"
    assert run.data.tags["catdog.model_ref"] == reference
    low, high = wilson_interval(6, 8)
    metrics = run.data.metrics
    assert (metrics["accuracy"], metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]) == (
        0.75,
        low,
        high,
    )
    assert metrics["test_images"] == 8 and metrics["cat_recall"] == 0.75
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == dvc_hash(folder)[:36] and dataset.dataset.name == "new_photos"
    assert [tag.value for tag in dataset.tags if tag.key == "mlflow.data.context"] == ["evaluation"]
    artifacts = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=tmp_path / "a")
    assert len(pd.read_csv(Path(artifacts) / "score" / "photos.csv")) == 8

    registered = MlflowClient().get_model_version("catdog-scratch", version)
    logged = logged_model(version)
    scored = {m.key: m for m in logged.metrics if m.key.startswith("score_")}
    assert scored["score_accuracy"].value == 0.75
    assert scored["score_accuracy_ci_low"].value == low
    assert (scored["score_accuracy"].dataset_name, scored["score_accuracy"].dataset_digest) == (
        "new_photos",
        dvc_hash(folder)[:36],
    )
    assert scored["score_accuracy"].run_id == run.info.run_id
    tag = registered.tags["catdog.score.new_photos"]
    assert tag == f"75.0% [40.9, 92.9] on 8 photos, run {run.info.run_id}"
    assert first_line.startswith(f"accuracy {tag.split(' on ')[0]} on 8 photos")


def test_a_keras_file_logs_the_run_only_and_a_run_uri_reaches_its_logged_model(
    store, tmp_path, capsys, model, model_path
):
    run_id, version = register_model(model, tmp_path)
    write_photos(tmp_path / "from_file", SIX_OF_EIGHT)
    assert main(["score", "from_file", "--model", str(model_path)]) == 0
    plain = logged_score_run("from_file")
    assert plain.data.metrics["accuracy"] == 0.75 and not plain.inputs.model_inputs

    write_photos(tmp_path / "from_run", SIX_OF_EIGHT)
    assert main(["score", "from_run", "--model", f"runs:/{run_id}/scratch"]) == 0
    through_run = logged_score_run("from_run")
    registered = MlflowClient().get_model_version("catdog-scratch", version)
    logged = logged_model(version)
    assert [i.model_id for i in through_run.inputs.model_inputs] == [logged.model_id]
    assert {m.dataset_name for m in logged.metrics if m.key == "score_accuracy"} == {"from_run"}
    assert not any(key.startswith("catdog.score.") for key in registered.tags)
    assert "logged to MLflow: http://127.0.0.1:5000/#/experiments/" in capsys.readouterr().err


def ui_args() -> SimpleNamespace:
    return SimpleNamespace(host="127.0.0.1", port=5055)


def test_ui_opens_the_project_experiment_in_the_model_training_view(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # restored after
    (tmp_path / "params.yaml").write_text("mlflow:\n  experiment: team-photos\n")
    executed = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))

    commands.ui(ui_args(), tmp_path)  # no store yet: the home page, and what to do
    out = capsys.readouterr().out
    assert "http://127.0.0.1:5055/#/?workflowType=machine_learning " in out
    assert "run the pipeline first" in out
    assert not (tmp_path / "mlflow.db").exists()

    experiment_id = MlflowClient(uri).create_experiment("team-photos")
    commands.ui(ui_args(), tmp_path)
    out = capsys.readouterr().out
    page = f"http://127.0.0.1:5055/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    assert re.search(rf"MLflow UI on {re.escape(page)} for {re.escape(uri)}", out)
    assert "run the pipeline first" not in out
    assert executed[-1][1:4] == ["-m", "mlflow", "ui"] and uri in executed[-1]


@pytest.mark.realdata
@pytest.mark.skipif(not REPORT_PHOTOS.is_dir(), reason="shared report photos absent")
def test_an_untrained_model_on_200_real_photos_reports_its_interval(tmp_path):
    subset = tmp_path / "report"
    subset.mkdir()
    for label in ("cat", "dog"):  # a folder of links: the photos are read in place
        for number in range(4000, 4100):
            (subset / f"{label}.{number}.jpg").symlink_to(REPORT_PHOTOS / f"{label}.{number}.jpg")
    untrained = keras.saving.load_model(tiny_image_model(tmp_path / "m.keras", 0.5))
    result = score_folder(untrained, subset)
    first = render_report(result).splitlines()[0]
    number = r"\d{1,3}\.\d"
    pattern = rf"accuracy {number}% \[{number}, {number}\] on 200 photos \(100 cats, 100 dogs\)"
    assert re.fullmatch(pattern, first), first
    assert result.images == 200 and not result.skipped
    assert result.metrics["accuracy_ci_low"] < result.metrics["accuracy"] < 1
