"""Tests for catdog.synthetic: determinism, layout, argument checks and class signal."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from catdog import synthetic
from catdog.synthetic import draw_animal, draw_animal_with_head_box, generate_synthetic
from catdog.vocabulary import LABELS

REPO = Path(__file__).resolve().parents[1]
# The generator as the pipeline's data and every recorded dvc.lock hash were made with it.
GENERATOR_COMMIT = "c3b954cee0a502f563edacc9bfa46b09585f94bb"


def _read_all(paths: list[Path]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths}


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = generate_synthetic(tmp_path / "a", per_class=3, size=64, seed=7)
    b = generate_synthetic(tmp_path / "b", per_class=3, size=64, seed=7)
    assert _read_all(a) == _read_all(b)


def test_rerun_into_same_directory_overwrites_identically(tmp_path: Path) -> None:
    first = _read_all(generate_synthetic(tmp_path, per_class=2, size=48, seed=1))
    second = generate_synthetic(tmp_path, per_class=2, size=48, seed=1)
    assert _read_all(second) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(first)


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    a = _read_all(generate_synthetic(tmp_path / "a", per_class=3, size=64, seed=0))
    b = _read_all(generate_synthetic(tmp_path / "b", per_class=3, size=64, seed=1))
    assert a.keys() == b.keys()
    assert all(a[name] != b[name] for name in a)


def test_all_pictures_differ_from_each_other(tmp_path: Path) -> None:
    files = _read_all(generate_synthetic(tmp_path, per_class=4, size=48))
    assert len(set(files.values())) == len(files)


def test_kaggle_flat_layout(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "train"  # missing parents are created
    paths = generate_synthetic(out, per_class=3, size=40)
    expected = sorted(out / f"{label}.{n}.jpg" for label in ("cat", "dog") for n in range(3))
    assert paths == expected
    assert paths == sorted(paths)
    # Nothing else (no temporary files) is left in the directory.
    assert sorted(out.iterdir()) == expected


@pytest.mark.parametrize("size", [32, 57, 128])
def test_files_decode_as_rgb_of_requested_size(tmp_path: Path, size: int) -> None:
    for path in generate_synthetic(tmp_path, per_class=2, size=size, quality=75):
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert img.mode == "RGB"
            assert img.size == (size, size)


def test_picture_k_does_not_depend_on_per_class(tmp_path: Path) -> None:
    small = _read_all(generate_synthetic(tmp_path / "3", per_class=3, size=48, seed=5))
    large = _read_all(generate_synthetic(tmp_path / "5", per_class=5, size=48, seed=5))
    assert len(large) == 10
    assert {name: large[name] for name in small} == small


def test_quality_changes_the_encoding(tmp_path: Path) -> None:
    low = generate_synthetic(tmp_path / "low", per_class=1, size=96, quality=20)
    high = generate_synthetic(tmp_path / "high", per_class=1, size=96, quality=95)
    assert all(lo.stat().st_size < hi.stat().st_size for lo, hi in zip(low, high, strict=True))


def test_draw_animal_is_a_function_of_the_rng_state() -> None:
    for label in LABELS:
        a = draw_animal(label, np.random.default_rng(123), 64)
        b = draw_animal(label, np.random.default_rng(123), 64)
        c = draw_animal(label, np.random.default_rng(124), 64)
        assert a.mode == "RGB"
        assert a.size == (64, 64)
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_draw_animal_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="bird"):
        draw_animal("bird", np.random.default_rng(0), 64)


def test_draw_animal_rejects_small_size() -> None:
    with pytest.raises(ValueError, match="size"):
        draw_animal("cat", np.random.default_rng(0), 31)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"per_class": 0}, "per_class"),
        ({"per_class": -3}, "per_class"),
        ({"per_class": 1.5}, "per_class"),
        ({"per_class": 1, "size": 31}, "size"),
        ({"per_class": 1, "seed": -1}, "seed"),
        ({"per_class": 1, "quality": 0}, "quality"),
        ({"per_class": 1, "quality": 101}, "quality"),
    ],
)
def test_generate_rejects_invalid_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=name):
        generate_synthetic(out, **kwargs)
    assert not out.exists()  # arguments are checked before anything is written


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        generate_synthetic(tmp_path, per_class=2, size=32)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- head boxes


def _synthetic_at_head(tmp_path: Path) -> ModuleType:
    """catdog/synthetic.py at GENERATOR_COMMIT, imported under another name."""
    try:
        source = subprocess.run(
            ["git", "show", f"{GENERATOR_COMMIT}:catdog/synthetic.py"],
            cwd=REPO,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git checkout to compare the generator with")
    path = tmp_path / "synthetic_at_head.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("synthetic_at_head", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_head_boxes_change_no_generated_byte(tmp_path: Path) -> None:
    """The order of random draws is the data: returning head boxes changes no byte."""
    committed = _synthetic_at_head(tmp_path)
    now = generate_synthetic(tmp_path / "now", per_class=8, size=64, seed=3)
    before = committed.generate_synthetic(tmp_path / "before", per_class=8, size=64, seed=3)
    assert _read_all(now) == _read_all(before)
    for label in LABELS:
        for index in range(40):
            size = 32 + 3 * index
            expected = np.asarray(committed.draw_animal(label, np.random.default_rng(index), size))
            image, _ = draw_animal_with_head_box(label, np.random.default_rng(index), size)
            assert np.array_equal(np.asarray(image), expected), (label, index)
            assert np.array_equal(
                np.asarray(draw_animal(label, np.random.default_rng(index), size)), expected
            )


def _fur(label: str, seed: list[int], size: int) -> np.ndarray:
    """The head's fill colour, by replaying the picture's first draws (background, style)."""
    rng = np.random.default_rng(seed)
    synthetic._background(rng, size * synthetic._SUPERSAMPLE)
    return np.asarray(synthetic._Style(rng).fur, dtype=float)


def _box_mask(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((size, size), bool)
    mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask


def test_head_box_lies_in_the_picture_and_holds_the_head_colour() -> None:
    # Over these pictures about 0.47 of the pixels in a box are near the head's fur colour
    # (brightness, contrast and noise move them), 0.13 outside; a box moved sideways by half
    # its width holds 0.28, one grown by half its width on each side 0.25.
    size, near, outside, moved, grown = 96, [], [], [], []
    for label_id, label in enumerate(LABELS):
        for index in range(60):
            seed = [11, label_id, index]
            image, box = draw_animal_with_head_box(label, np.random.default_rng(seed), size)
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size, box
            pixels = np.asarray(image, dtype=float)
            is_fur = np.linalg.norm(pixels - _fur(label, seed, size), axis=-1) < 60
            inside, width = _box_mask(box, size), x1 - x0
            near.append(is_fur[inside].mean())
            outside.append(is_fur[~inside].mean())
            moved.append(is_fur[np.roll(inside, width // 2, axis=1)].mean())
            half = width // 2
            grown.append(
                is_fur[_box_mask((x0 - half, y0 - half, x1 + half, y1 + half), size)].mean()
            )
    assert np.mean(near) > 0.4
    assert np.mean(near) > 3 * np.mean(outside)
    assert np.mean(near) > np.mean(moved) + 0.1  # on the head, not beside it
    assert np.mean(near) > np.mean(grown) + 0.1  # and tight around it


def test_head_boxes_follow_the_picture_size() -> None:
    boxes = {}
    for size in (48, 96):
        image, boxes[size] = draw_animal_with_head_box("dog", np.random.default_rng(4), size)
        assert image.size == (size, size)
    # the same animal at twice the size: the box doubles, within a pixel of rounding each side
    assert np.abs(np.asarray(boxes[96]) - 2 * np.asarray(boxes[48])).max() <= 2


# ----------------------------------------------------------------------------- class signal
# 300 pictures per class at 48 px; 5-fold cross-validated linear classifiers. Over seeds
# 0..31: nearest centroid on mean RGB scored 0.44-0.58; ridge on (square roots of) 64-bin
# colour histograms of the central crop 0.45-0.57; nearest centroid on edge-orientation
# histograms 0.65-0.73. Chance is 0.5 with a standard error of 0.02 here. The tests can
# fail: giving cats and dogs disjoint halves of the fur palette makes the colour-histogram
# classifier score 0.64-0.71, and drawing dogs as cats drops the shape classifier to 0.54.


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    out = tmp_path_factory.mktemp("synthetic")
    paths = generate_synthetic(out, per_class=300, size=48, seed=0)
    images, labels = [], []
    for path in paths:
        with Image.open(path) as img:
            images.append(np.asarray(img, dtype=np.float32))
        labels.append(LABELS.index(path.name.split(".")[0]))
    return np.stack(images), np.asarray(labels)


def _nearest_centroid_cv(features: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    """Cross-validated accuracy of a nearest-centroid classifier on standardised features."""
    fold = np.arange(len(labels)) % folds
    correct = 0
    for f in range(folds):
        test, train = fold == f, fold != f
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        z = (features - mean) / std
        centroids = np.stack([z[train & (labels == k)].mean(0) for k in (0, 1)])
        dist = ((z[test][:, None, :] - centroids[None]) ** 2).sum(-1)
        correct += int((dist.argmin(1) == labels[test]).sum())
    return correct / len(labels)


def _ridge_cv(
    features: np.ndarray, labels: np.ndarray, lam: float = 100.0, folds: int = 5
) -> float:
    """Cross-validated accuracy of a ridge-regression classifier on standardised features."""
    fold = np.arange(len(labels)) % folds
    target = labels * 2.0 - 1.0
    correct = 0
    for f in range(folds):
        test, train = fold == f, fold != f
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        z = np.hstack([(features - mean) / std, np.ones((len(labels), 1))])
        a = z[train]
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ target[train])
        correct += int(((z[test] @ w > 0) == (labels[test] == 1)).sum())
    return correct / len(labels)


def _joint_colour_histograms(images: np.ndarray, levels: int = 4) -> np.ndarray:
    """Fraction of pixels in each of levels**3 RGB colour cubes."""
    q = np.minimum((images // (256 // levels)).astype(int), levels - 1)
    code = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    hist = np.stack([np.bincount(c.ravel(), minlength=levels**3) for c in code])
    return hist.astype(np.float32) / code[0].size


def _cell_orientation_histograms(images: np.ndarray, cells: int = 4, bins: int = 8) -> np.ndarray:
    """Per-cell histograms of gradient orientation weighted by magnitude (a tiny HOG)."""
    gray = images.mean(-1)
    gy, gx = np.gradient(gray, axis=(1, 2))
    magnitude = np.hypot(gx, gy)
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    index = np.minimum((orientation / np.pi * bins).astype(int), bins - 1)
    n, h, w = gray.shape
    onehot = np.zeros((n, h, w, bins), np.float32)
    np.put_along_axis(onehot, index[..., None], magnitude[..., None], axis=-1)
    hist = onehot.reshape(n, cells, h // cells, cells, w // cells, bins).sum((2, 4))
    hist /= hist.sum(-1, keepdims=True) + 1e-6
    return hist.reshape(n, -1)


def test_dataset_is_balanced(dataset: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = dataset
    assert images.shape == (600, 48, 48, 3)
    assert np.bincount(labels).tolist() == [300, 300]


def test_mean_colour_does_not_give_the_class_away(
    dataset: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = dataset
    accuracy = _nearest_centroid_cv(images.mean(axis=(1, 2)), labels)
    assert accuracy < 0.65, f"mean RGB predicts the class with accuracy {accuracy:.2f}"


def test_colour_histogram_does_not_give_the_class_away(
    dataset: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = dataset
    h, w = images.shape[1:3]
    centre = images[:, h // 4 : h - h // 4, w // 4 : w - w // 4]  # mostly fur, less background
    accuracy = _ridge_cv(np.sqrt(_joint_colour_histograms(centre)), labels)
    assert accuracy < 0.62, f"colour histograms predict the class with accuracy {accuracy:.2f}"


def test_classes_differ_in_shape(dataset: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = dataset
    accuracy = _nearest_centroid_cv(_cell_orientation_histograms(images), labels)
    assert accuracy >= 0.6, f"edge orientations predict the class with accuracy {accuracy:.2f}"
