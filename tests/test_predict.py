"""catdog predict: files and folders in, CSV out, unreadable files reported."""

from __future__ import annotations

import io
import shutil

import keras
import numpy as np
import pandas as pd
import pytest

from catdog.augmentation import make_augmentation
from catdog.cli.commands import run_predict
from catdog.convnets import make_scratch_model
from catdog.errors import ModelReferenceError
from catdog.ingest import ingest_folder
from tests.conftest import SHARED_PHOTOS, write_image


@pytest.fixture
def scratch_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = make_scratch_model(80, make_augmentation(flip="horizontal", rotation=0.1, zoom=0.2))
    path = tmp_path / "scratch.keras"
    model.save(path)
    return path


def two_photos_and_a_broken_one(folder):
    folder.mkdir()
    shared = SHARED_PHOTOS / "train"
    if shared.is_dir():  # real photos when the shared set is there
        shutil.copy(shared / "cat.0.jpg", folder / "cat.0.jpg")
        shutil.copy(shared / "dog.0.jpg", folder / "dog.0.jpg")
    else:
        write_image(folder / "cat.0.jpg", size=(120, 90), seed=1)
        write_image(folder / "dog.0.jpg", size=(120, 90), seed=2)
    data = (folder / "cat.0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])


def test_folder_with_a_truncated_file_gives_two_rows_and_reports_the_third(
    tmp_path, scratch_model, capsys
):
    folder = tmp_path / "photos"
    two_photos_and_a_broken_one(folder)
    out = tmp_path / "predictions.csv"
    code = run_predict([folder], str(scratch_model), out, tmp_path, tmp_path)
    assert code == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "prob_dog", "label"]
    assert sorted(table["path"]) == [str(folder / "cat.0.jpg"), str(folder / "dog.0.jpg")]
    assert table["prob_dog"].between(0, 1).all()
    assert set(table["label"]) <= {"cat", "dog"}
    assert (table["label"] == np.where(table["prob_dog"] >= 0.5, "dog", "cat")).all()
    err = capsys.readouterr().err
    assert "truncated.jpg" in err and "cannot decode" in err


def test_stdout_when_no_out_and_converted_images_match_ingested_ones(
    tmp_path, scratch_model, capsys
):
    source = tmp_path / "source"
    for label, seed in (("cat", 3), ("dog", 4)):  # CMYK and palette: both stored as RGB PNG
        write_image(source / f"{label}.0.jpg", size=(90, 90), mode="CMYK", seed=seed)
        write_image(source / f"{label}.1.png", size=(90, 70), mode="P", fmt="PNG", seed=seed + 10)
    report = ingest_folder(source, tmp_path / "raw", max_pixels=10**7, min_per_class=1)
    stored = {row.path: tmp_path / "raw" / row.out for row in report.by_status("accepted")}
    assert len(stored) == 4 and all(p.suffix == ".png" for p in stored.values())
    originals = [source / name for name in sorted(stored)]
    missing = tmp_path / "nowhere.jpg"

    assert run_predict([*originals, missing], str(scratch_model), None, tmp_path, tmp_path) == 0
    captured = capsys.readouterr()
    from_originals = pd.read_csv(io.StringIO(captured.out))
    assert "nowhere.jpg: no such file" in captured.err
    ingested = [stored[name] for name in sorted(stored)]
    assert run_predict(ingested, str(scratch_model), None, tmp_path, tmp_path) == 0
    from_ingested = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(from_originals["path"]) == [str(p) for p in originals]
    # the same pixels reach the model whether predict converts a file or the ingest stored it
    np.testing.assert_array_equal(from_originals["prob_dog"], from_ingested["prob_dog"])
    assert from_originals["prob_dog"].nunique() > 1  # four different images, four answers


def test_nothing_readable_exits_non_zero_and_bad_model_says_what_to_do(tmp_path, scratch_model):
    broken = tmp_path / "x.jpg"
    broken.write_text("not an image")
    assert run_predict([broken], str(scratch_model), None, tmp_path, tmp_path) == 1
    with pytest.raises(ModelReferenceError, match="dvc repro"):
        run_predict([broken], "models/missing.keras", None, tmp_path, tmp_path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--threshold", "5"], "--threshold 5: must lie strictly between 0 and 1"),
        (["--out", "{tmp}/missing/p.csv"], "--out {tmp}/missing/p.csv: the folder {tmp}/missing"),
        (["--out", "{tmp}/params.yaml"], "--out {tmp}/params.yaml: would overwrite a file"),
        (["--out", "{tmp}/photo.jpg"], "--out {tmp}/photo.jpg: would overwrite a file"),
        (["--out", "{tmp}"], "--out {tmp}: is a folder"),
        (["--model", "{tmp}/notes.txt"], "--model {tmp}/notes.txt: not a Keras model file"),
    ],
)
def test_bad_predict_arguments_are_one_line_and_write_nothing(
    tmp_path, capsys, monkeypatch, arguments, message
):
    from catdog.cli.main import main

    photo = write_image(tmp_path / "photo.jpg", seed=3)
    (tmp_path / "params.yaml").write_text("kept: true\n")
    (tmp_path / "notes.txt").write_text("not a model\n")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    monkeypatch.chdir(tmp_path)
    argv = ["predict", str(photo), *(a.format(tmp=tmp_path) for a in arguments)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"catdog: error: {message.format(tmp=tmp_path)}")
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
