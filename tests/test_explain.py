"""Explanations people look at: evaluate's Grad-CAM grids and `catdog explain` for any photo."""

from __future__ import annotations

import io

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catdog import vgg16
from catdog import vocabulary as vocab
from catdog.augmentation import make_augmentation
from catdog.cli.commands import run_explain, run_predict
from catdog.convnets import make_scratch_model
from catdog.params import EvaluateParams
from tasks.evaluate import explained_images, plot_gradcams
from tests.conftest import write_image

SIZE = 64


def augmentation() -> keras.Sequential:
    return make_augmentation(flip="horizontal", rotation=0.1, zoom=0.2)


def test_explained_images_are_the_surest_mistakes_then_the_surest_right_answers():
    y_true = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    prob = np.array([0.10, 0.45, 0.95, 0.60, 0.99, 0.02, 0.70, 0.30])
    worst, surest = explained_images(y_true, prob, threshold=0.5, count=4)
    assert list(worst) == [2, 0, 3, 1]  # wrong by 0.95, 0.90, 0.60, 0.55
    assert list(surest) == [4, 5]  # right by 0.01 and 0.02 from certainty
    worst, surest = explained_images(y_true, prob, threshold=0.5, count=1)
    assert list(worst) == [2] and list(surest) == []
    worst, surest = explained_images(y_true, prob, threshold=0.2, count=8)
    assert list(worst) == [2, 0, 3, 7]  # a lower threshold makes 0.30 a dog, 0.10 still a cat


def _test_photos(root, count: int = 6) -> pd.DataFrame:
    rows = []
    for index in range(count):
        label = ("cat", "dog")[index % 2]
        path = f"data/raw/{label}.{index}.png"
        write_image(root / path, size=(SIZE + 9, SIZE - 5), fmt="PNG", seed=index)
        rows.append({"path": path, "label": label})
    return pd.DataFrame(rows)


def test_evaluate_draws_a_grid_per_model_and_none_when_turned_off(tmp_path):
    test = _test_photos(tmp_path)
    y_true = (test["label"] == "dog").to_numpy().astype(int)
    conv_base = vgg16.make_conv_base(SIZE, seed=1)
    (tmp_path / vocab.CONV_BASE_WEIGHTS).parent.mkdir(parents=True)
    conv_base.save_weights(tmp_path / vocab.CONV_BASE_WEIGHTS)
    models = {
        "classifier": vgg16.make_dense_head(conv_base.output_shape[1:], seed=2),
        "scratch": make_scratch_model(SIZE, augmentation(), arch="xception"),
    }
    probabilities = {name: np.linspace(0.05, 0.95, len(test)) for name in models}
    figures = tmp_path / "figures"
    figures.mkdir()

    def draw(count: int) -> list[str]:
        evaluate = EvaluateParams(gradcam=count)
        plot_gradcams(models, probabilities, test, y_true, evaluate, SIZE, tmp_path, False, figures)
        return sorted(p.name for p in figures.iterdir())

    assert draw(0) == []
    assert draw(2) == ["gradcam_classifier.png", "gradcam_scratch.png"]
    with Image.open(figures / "gradcam_scratch.png") as grid:
        width, height = grid.size
    assert width > height > 0  # a row of four: two mistakes, one right answer... and a title
    assert EvaluateParams().gradcam > 0  # on unless turned off


@pytest.fixture
def scratch_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = make_scratch_model(80, augmentation(), arch="book", seed=3)
    path = tmp_path / "scratch.keras"
    model.save(path)
    return path


def test_explain_writes_an_overlay_per_photo_and_the_answers_predict_gives(
    tmp_path, scratch_model, capsys
):
    photos = tmp_path / "photos"
    write_image(photos / "cat.1.jpg", size=(900, 500), seed=1)  # larger than an overlay
    write_image(photos / "dog.2.png", size=(120, 90), mode="P", fmt="PNG", seed=2)
    write_image(photos / "more" / "cat.1.jpg", size=(100, 100), seed=3)  # the same name
    (photos / "broken.jpg").write_bytes((photos / "cat.1.jpg").read_bytes()[:300])
    out = tmp_path / "explained"

    assert run_explain([photos], str(scratch_model), out, tmp_path) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(io.StringIO(captured.out))
    assert "broken.jpg" in captured.err and "cannot decode" in captured.err
    assert (out / "explain.csv").read_text() == captured.out
    assert list(table.columns) == ["path", "prob_dog", "label", "heatmap"]
    assert [p.split("/photos/")[1] for p in table["path"]] == [
        "cat.1.jpg",
        "dog.2.png",
        "more/cat.1.jpg",
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "cat.1-2.png",
        "cat.1.png",
        "dog.2.png",
        "explain.csv",
    ]
    sizes = []
    for row in table.itertuples():
        with Image.open(row.heatmap) as overlay, Image.open(row.path) as photo:
            sizes.append((overlay.size, photo.size))
            assert overlay.mode == "RGB"
    assert sizes[0] == ((640, 356), (900, 500))  # shrunk to 640 px, the photo's shape kept
    assert sizes[1][0] == sizes[1][1] and sizes[2][0] == sizes[2][1]
    # the photos reach the model as `catdog predict` sends them: the same answers
    assert run_predict([photos], str(scratch_model), None, tmp_path, tmp_path) == 0
    predicted = pd.read_csv(io.StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(table["prob_dog"], predicted["prob_dog"], atol=2e-6)
    assert list(table["label"]) == list(predicted["label"])


def test_an_overlay_is_the_photo_where_the_model_did_not_look(tmp_path, scratch_model):
    photo = write_image(tmp_path / "photo.png", size=(80, 80), fmt="PNG", seed=5)
    run_explain([photo], str(scratch_model), tmp_path / "out", tmp_path)
    overlay = np.asarray(Image.open(tmp_path / "out" / "photo.png"), dtype=float)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=float)
    assert overlay.shape == original.shape
    assert 0 < np.abs(overlay - original).mean() < 0.5 * 255  # blended, not replaced


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--threshold", "1"], "--threshold 1: must lie strictly between 0 and 1"),
        (["--out", "{tmp}/notes.txt"], "--out {tmp}/notes.txt: is a file"),
        (["--out", "{tmp}/photos/out"], "--out {tmp}/photos/out: lies in the photos' folder"),
        (["--model", "{tmp}/notes.txt"], "--model {tmp}/notes.txt: not a Keras model file"),
        (["--model", "{tmp}/unnamed.keras"], "--model {tmp}/unnamed.keras: model 'unnamed' has"),
    ],
)
def test_bad_explain_arguments_are_one_line_and_write_nothing(
    tmp_path, capsys, monkeypatch, arguments, message
):
    from catdog.cli.main import main

    write_image(tmp_path / "photos" / "cat.0.jpg", seed=3)
    (tmp_path / "notes.txt").write_text("not a model\n")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)  # a feature map no model definition declared
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs, name="unnamed").save(tmp_path / "unnamed.keras")
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    argv = ["explain", str(tmp_path / "photos"), *(a.format(tmp=tmp_path) for a in arguments)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"catdog: error: {message.format(tmp=tmp_path)}")
    assert sorted(tmp_path.rglob("*")) == before
