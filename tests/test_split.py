import shutil

import pandas as pd
import pytest

from catdog.ingest import ingest_folder
from catdog.split import SPLITS, build_manifest, read_manifest, scan_images
from tests.conftest import write_image


def images_frame(tmp_path, cats=20, dogs=10):
    raw = tmp_path / "data" / "raw"
    for i in range(cats):
        write_image(raw / "cat" / f"cat.{i}.jpg", seed=i)
    for i in range(dogs):
        write_image(raw / "dog" / f"dog.{i}.jpg", seed=1000 + i)
    return scan_images(raw, tmp_path)


def test_split_is_stratified_deterministic_and_seeded(tmp_path):
    images = images_frame(tmp_path)
    first, dropped = build_manifest(images, fractions=(0.6, 0.2, 0.2), seed=1)
    again, _ = build_manifest(
        images.sample(frac=1, random_state=3), fractions=(0.6, 0.2, 0.2), seed=1
    )
    other, _ = build_manifest(images, fractions=(0.6, 0.2, 0.2), seed=2)
    assert first.equals(again)  # input order does not matter
    assert not first.equals(other)
    counts = first.groupby(["split", "label"]).size().to_dict()
    assert counts == {
        ("train", "cat"): 12,
        ("validation", "cat"): 4,
        ("test", "cat"): 4,
        ("train", "dog"): 6,
        ("validation", "dog"): 2,
        ("test", "dog"): 2,
    }
    assert dropped == {"duplicates": 0, "conflicting_labels": 0}
    assert list(first.columns) == ["path", "label", "split", "sha256"]
    assert first["path"].str.startswith("data/raw/").all()


def test_identical_content_never_lands_in_two_splits(tmp_path):
    images = images_frame(tmp_path, cats=10, dogs=10)
    raw = tmp_path / "data" / "raw"
    for i in range(5):  # five exact copies of cats, and one picture under both labels
        shutil.copy(raw / "cat" / f"cat.{i}.jpg", raw / "cat" / f"cat.copy{i}.jpg")
    shutil.copy(raw / "cat" / "cat.9.jpg", raw / "dog" / "dog.cat9.jpg")
    images = scan_images(raw, tmp_path)
    manifest, dropped = build_manifest(images, fractions=(0.5, 0.25, 0.25), seed=0)
    assert manifest["sha256"].is_unique
    assert dropped == {"duplicates": 5, "conflicting_labels": 2}
    assert not manifest["path"].str.contains("cat.9.jpg|dog.cat9", regex=True).any()


def test_every_split_gets_each_class_even_when_small(tmp_path):
    images = images_frame(tmp_path, cats=3, dogs=4)
    manifest, _ = build_manifest(images, fractions=(0.8, 0.1, 0.1), seed=0)
    for split in SPLITS:
        assert set(manifest[manifest["split"] == split]["label"]) == {"cat", "dog"}


def test_manifest_round_trip_and_validation(tmp_path):
    manifest, _ = build_manifest(images_frame(tmp_path), fractions=(0.6, 0.2, 0.2), seed=0)
    path = tmp_path / "manifest.csv"
    manifest.to_csv(path, index=False)
    assert read_manifest(path).equals(manifest.astype(str))
    pd.DataFrame({"path": ["x"], "label": ["cat"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        read_manifest(path)


def test_scan_matches_what_ingest_wrote(flat_folder, tmp_path):
    raw = tmp_path / "ws" / "data" / "raw"
    ingest_folder(flat_folder, raw, max_pixels=10**7, min_per_class=1)
    images = scan_images(raw, tmp_path / "ws")
    assert len(images) == 12 and set(images["label"]) == {"cat", "dog"}
