"""Tests for catdog.plots: valid PNGs, their content, atomic writes, thread safety."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from catdog.metrics import calibration_curve, roc_curve
from catdog.plots import evaluation, figure, grid, history
from catdog.plots.evaluation import plot_calibration, plot_confusion_matrix, plot_roc_curves
from catdog.plots.grid import plot_image_grid
from catdog.plots.history import plot_history
from tests.test_metrics import random_scores


def assert_valid_png(path: Path) -> tuple[int, int]:
    """Asserts ``path`` is a non-empty, decodable, non-blank PNG; returns its size."""
    assert path.is_file()
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("L"))
        size = img.size
    assert size[0] > 0 and size[1] > 0
    assert pixels.std() > 0, "image is a single flat colour"
    return size


def assert_no_temp_files(directory: Path, expected: set[str]) -> None:
    """Asserts ``directory`` holds exactly the ``expected`` file names."""
    assert {p.name for p in directory.iterdir()} == expected


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Records every figure the plot functions save, to inspect their content."""
    figures: list[Figure] = []
    original = figure.save_png

    def recording_save(fig: Figure, path: Path) -> Path:
        figures.append(fig)
        return original(fig, path)

    for module in (evaluation, grid, history):
        monkeypatch.setattr(module, "save_png", recording_save)
    return figures


def all_texts(fig: Figure) -> list[str]:
    """All text strings drawn on a figure, including titles and legends."""
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


# ------------------------------------------------------------------------------ plotting


def sample_history() -> dict[str, list[float]]:
    return {
        "loss": [0.69, 0.55, 0.45, 0.38, 0.30],
        "accuracy": [0.52, 0.70, 0.78, 0.83, 0.88],
        "val_loss": [0.65, 0.50, 0.47, 0.49, 0.55],
        "val_accuracy": [0.55, 0.72, 0.77, 0.76, 0.75],
    }


def test_plot_confusion_matrix_writes_png_with_counts(
    tmp_path: Path, captured: list[Figure]
) -> None:
    cm = np.array([[113, 24], [28, 135]])
    out = tmp_path / "nested" / "dir" / "cm.png"
    result = plot_confusion_matrix(cm, out, title="Confusion matrix")
    assert result == out
    assert_valid_png(out)
    assert_no_temp_files(out.parent, {"cm.png"})
    texts = all_texts(captured[0])
    for count in ("113", "24", "28", "135"):
        assert any(t.startswith(count) for t in texts), count
    assert {"cat", "dog", "Confusion matrix", "Predicted", "Actual"} <= set(texts)


def test_plot_confusion_matrix_rejects_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        plot_confusion_matrix(np.ones((3, 3)), tmp_path / "cm.png", title="x")
    with pytest.raises(ValueError, match="non-negative"):
        plot_confusion_matrix(np.array([[1, -1], [0, 2]]), tmp_path / "cm.png", title="x")
    assert list(tmp_path.iterdir()) == []


def test_plot_roc_curves_one_line_per_model_plus_diagonal(
    tmp_path: Path, captured: list[Figure]
) -> None:
    y_true, y_prob = random_scores(11)
    curves = {"scratch": roc_curve(y_true, y_prob), "vgg16": roc_curve(y_true, y_prob**2)}
    aucs = {"scratch": 0.8123, "vgg16": 0.9}
    out = plot_roc_curves(curves, tmp_path / "roc.png", title="ROC test", aucs=aucs)
    assert_valid_png(out)
    assert_no_temp_files(tmp_path, {"roc.png"})
    ax = captured[0].axes[0]
    assert len(ax.get_lines()) == len(curves) + 1
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), curves["scratch"]["fpr"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("scratch" in t and "0.812" in t for t in legend)
    assert any("vgg16" in t and "0.900" in t for t in legend)


def test_plot_roc_curves_without_aucs_and_empty(tmp_path: Path) -> None:
    y_true, y_prob = random_scores(12)
    assert_valid_png(plot_roc_curves({"m": roc_curve(y_true, y_prob)}, tmp_path / "r.png"))
    with pytest.raises(ValueError, match="at least one"):
        plot_roc_curves({}, tmp_path / "empty.png")


def test_plot_calibration_writes_png(tmp_path: Path, captured: list[Figure]) -> None:
    y_true, y_prob = random_scores(13)
    curves = {
        "a": calibration_curve(y_true, y_prob),
        "b": calibration_curve(y_true, np.sqrt(y_prob), n_bins=5),
    }
    out = plot_calibration(curves, tmp_path / "cal.png", title="Calibration test")
    assert_valid_png(out)
    assert_no_temp_files(tmp_path, {"cal.png"})
    reliability = captured[0].axes[0]
    assert len(reliability.get_lines()) == len(curves) + 1  # + perfect diagonal
    assert "Calibration test" in all_texts(captured[0])


def test_plot_calibration_rejects_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing columns"):
        plot_calibration({"m": pd.DataFrame({"mean_prob": [0.5]})}, tmp_path / "c.png")


def test_plot_history_two_panels_epochs_from_one_best_epoch(
    tmp_path: Path, captured: list[Figure]
) -> None:
    history = sample_history()
    out = plot_history(history, tmp_path / "history.png", title="Training")
    assert_valid_png(out)
    assert_no_temp_files(tmp_path, {"history.png"})
    fig = captured[0]
    loss_ax, acc_ax = fig.axes
    best = int(np.argmin(history["val_loss"])) + 1  # epoch 3
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = ax.get_lines()
        train = next(line for line in lines if line.get_label() == "train")
        val = next(line for line in lines if line.get_label() == "validation")
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_allclose(train.get_ydata(), history[key])
        np.testing.assert_allclose(val.get_ydata(), history[f"val_{key}"])
        marker = next(line for line in lines if "best" in line.get_label())
        assert set(np.asarray(marker.get_xdata(), dtype=float)) == {best}
    assert "Training" in all_texts(fig)


def test_plot_history_without_validation_or_accuracy(
    tmp_path: Path, captured: list[Figure]
) -> None:
    out = plot_history({"loss": [1.0, 0.5, 0.3]}, tmp_path / "h.png", title="loss only")
    assert_valid_png(out)
    labels = [line.get_label() for ax in captured[0].axes for line in ax.get_lines()]
    assert labels == ["train"]  # no validation line, no best-epoch marker


def test_plot_history_accepts_legacy_acc_keys(tmp_path: Path, captured: list[Figure]) -> None:
    history = {"loss": [0.7, 0.5], "acc": [0.5, 0.7], "val_acc": [0.45, 0.6]}
    assert_valid_png(plot_history(history, tmp_path / "h.png", title="legacy"))
    acc_ax = captured[0].axes[1]
    np.testing.assert_allclose(acc_ax.get_lines()[1].get_ydata(), history["val_acc"])


def test_plot_history_rejects_history_without_loss_or_accuracy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no loss or accuracy"):
        plot_history({"lr": [0.1, 0.01]}, tmp_path / "h.png", title="x")
    assert list(tmp_path.iterdir()) == []


def test_plot_image_grid_writes_png_and_layout_follows_ncols(
    tmp_path: Path, captured: list[Figure]
) -> None:
    rng = np.random.default_rng(14)
    images = rng.integers(0, 256, size=(5, 24, 32, 3), dtype=np.uint8)
    titles = [f"p={i / 10:.1f}" for i in range(5)]
    wide = plot_image_grid(images, tmp_path / "wide.png", titles=titles, ncols=5, title="Grid")
    tall = plot_image_grid(images, tmp_path / "tall.png", ncols=2)
    wide_w, wide_h = assert_valid_png(wide)
    tall_w, tall_h = assert_valid_png(tall)
    assert wide_w > tall_w and tall_h > wide_h
    assert_no_temp_files(tmp_path, {"wide.png", "tall.png"})
    assert len(captured[0].axes) == 5
    np.testing.assert_array_equal(captured[0].axes[2].get_images()[0].get_array(), images[2])
    assert set(titles) | {"Grid"} <= set(all_texts(captured[0]))


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), {}, "uint8"),
        (np.zeros((8, 8, 3), dtype=np.uint8), {}, "shape"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), {}, "shape"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), {"titles": ["one"]}, "titles"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), {"ncols": 0}, "ncols"),
    ],
)
def test_plot_image_grid_rejects_invalid_input(tmp_path: Path, images, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        plot_image_grid(images, tmp_path / "g.png", **kwargs)


def test_save_overwrites_existing_file_atomically(tmp_path: Path) -> None:
    out = tmp_path / "cm.png"
    out.write_bytes(b"stale")
    plot_confusion_matrix(np.array([[1, 2], [3, 4]]), out, title="new")
    assert out.read_bytes().startswith(b"\x89PNG")
    assert_no_temp_files(tmp_path, {"cm.png"})


def test_failed_save_leaves_target_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cm.png"
    out.write_bytes(b"previous")

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_confusion_matrix(np.array([[1, 2], [3, 4]]), out, title="x")
    assert out.read_bytes() == b"previous"
    assert_no_temp_files(tmp_path, {"cm.png"})


def test_plots_are_thread_safe(tmp_path: Path) -> None:
    y_true, y_prob = random_scores(15)

    def work(i: int) -> Path:
        if i % 2:
            return plot_roc_curves({"m": roc_curve(y_true, y_prob)}, tmp_path / f"{i}.png")
        return plot_history(sample_history(), tmp_path / f"{i}.png", title=f"run {i}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(work, range(8)))
    for path in paths:
        assert_valid_png(path)
    assert_no_temp_files(tmp_path, {f"{i}.png" for i in range(8)})


def test_module_avoids_pyplot_and_heavy_dependencies() -> None:
    code = (
        "import sys, catdog.plots.evaluation, catdog.plots.grid, catdog.plots.history\n"
        "bad = [m for m in ('matplotlib.pyplot', 'tensorflow', 'keras', 'prefect', 'mlflow', "
        "'dvc', 'sklearn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
