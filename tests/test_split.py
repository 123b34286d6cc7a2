import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catdog.ingest import ingest_folder
from catdog.manifest import MANIFEST_COLUMNS, read_manifest
from catdog.split import _assign_groups, build_manifest, scan_images
from catdog.vocabulary import SPLITS
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
    assert dropped == {
        "duplicates": 0,
        "conflicting_labels": 0,
        "near_duplicate_groups": 0,
        "near_duplicate_images": 0,
        "unused": 0,
    }
    assert list(first.columns) == ["path", "label", "split", "sha256", "group", "phash"]
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
    assert dropped == {
        "duplicates": 5,
        "conflicting_labels": 2,
        "near_duplicate_groups": 0,
        "near_duplicate_images": 0,
        "unused": 0,
    }
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


def write_photo(path, seed, size=(96, 72)):
    """A photo-like picture (smooth colour blobs), whose copies a difference hash recognises."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(cells, "RGB").resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)
    return path


def write_resized_copy(source, dest, size=(48, 36), quality=60):
    with Image.open(source) as image:
        image.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(dest, quality=quality)


def photos_with_copies(tmp_path, cats=12, dogs=12, copied_cats=4, copied_dogs=3):
    """Photos, and a resized, re-encoded copy of the first few of each class (own names)."""
    raw = tmp_path / "data" / "raw"
    for label, n, copied, offset in (
        ("cat", cats, copied_cats, 0),
        ("dog", dogs, copied_dogs, 500),
    ):
        for i in range(n):
            original = write_photo(raw / label / f"{label}.{i}.jpg", seed=offset + i)
            if i < copied:
                write_resized_copy(original, raw / label / f"{label}.small{i}.jpg")
    return raw


def copy_pairs(manifest):
    """(original split, copy split) for every resized copy in the manifest."""
    split_of = dict(zip(manifest["path"], manifest["split"], strict=True))
    pairs = []
    for path, split in split_of.items():
        if ".small" in path:
            pairs.append((split_of[path.replace(".small", ".")], split))
    return pairs


def test_scan_adds_perceptual_hash_and_groups(tmp_path):
    raw = photos_with_copies(tmp_path)
    images = scan_images(raw, tmp_path, workers=1)
    assert list(images.columns) == ["path", "label", "sha256", "phash", "group"]
    assert images["phash"].str.fullmatch("[0-9a-f]{16}").all()
    assert images["group"].dtype == np.int64
    by_path = images.set_index("path")["group"]
    for label, copied in (("cat", 4), ("dog", 3)):
        for i in range(copied):
            small, original = (
                f"data/raw/{label}/{label}.small{i}.jpg",
                f"data/raw/{label}/{label}.{i}.jpg",
            )
            assert by_path[small] == by_path[original]
    assert images["group"].nunique() == len(images) - 7
    # the group id is the row of the group's first member, whatever the number of threads
    assert (images["group"] <= images.index).all()
    assert images.equals(scan_images(raw, tmp_path, workers=4))
    exact = scan_images(raw, tmp_path, near_duplicates=False)
    assert (exact["phash"] == "").all() and exact["group"].tolist() == list(range(len(exact)))
    assert scan_images(raw, tmp_path, max_distance=0)["group"].nunique() > len(images) - 7


@pytest.mark.parametrize("fractions", [(0.5, 0.25, 0.25), (0.6, 0.2, 0.2), (0.34, 0.33, 0.33)])
def test_resized_copy_never_lands_in_another_split(tmp_path, fractions):
    raw = photos_with_copies(tmp_path)
    images = scan_images(raw, tmp_path)
    for seed in range(8):
        manifest, dropped = build_manifest(images, fractions=fractions, seed=seed)
        pairs = copy_pairs(manifest)
        assert len(pairs) == 7
        assert all(original == copy for original, copy in pairs), (seed, pairs)
        assert (manifest.groupby("group")["split"].nunique() == 1).all()
        assert len(manifest) == len(images)  # fractions use every image
        assert dropped["near_duplicate_groups"] == 7 and dropped["near_duplicate_images"] == 14
    # Control: grouping exact copies only, some copy does land in another split.
    exact = scan_images(raw, tmp_path, near_duplicates=False)
    straddling = [
        original != copy
        for seed in range(8)
        for original, copy in copy_pairs(build_manifest(exact, fractions=fractions, seed=seed)[0])
    ]
    assert any(straddling)


def test_near_duplicates_under_both_labels_are_dropped(tmp_path):
    raw = photos_with_copies(tmp_path, copied_cats=1, copied_dogs=0)
    write_resized_copy(raw / "cat" / "cat.5.jpg", raw / "dog" / "dog.looks-like-cat5.jpg")
    manifest, dropped = build_manifest(
        scan_images(raw, tmp_path), fractions=(0.5, 0.25, 0.25), seed=0
    )
    assert dropped["conflicting_labels"] == 2
    assert not manifest["path"].str.contains("cat.5.jpg|looks-like-cat5", regex=True).any()
    assert dropped["near_duplicate_groups"] == 1 and len(manifest) == 12 + 1 + 12 - 1


@pytest.mark.parametrize("seed", range(5))
def test_counts_give_exact_sizes_per_class_and_split(tmp_path, seed):
    raw = photos_with_copies(tmp_path, cats=20, dogs=18, copied_cats=5, copied_dogs=4)
    images = scan_images(raw, tmp_path)
    manifest, dropped = build_manifest(images, counts=(10, 5, 6), seed=seed)
    sizes = manifest.groupby(["split", "label"]).size().to_dict()
    assert sizes == {
        (s, label): n for s, n in zip(SPLITS, (10, 5, 6), strict=True) for label in ("cat", "dog")
    }
    assert (manifest.groupby("group")["split"].nunique() == 1).all()
    assert dropped["unused"] == len(images) - 42
    assert all(original == copy for original, copy in copy_pairs(manifest))
    again, _ = build_manifest(
        images.sample(frac=1, random_state=seed), counts=(10, 5, 6), seed=seed
    )
    assert again.equals(manifest)


def test_counts_larger_than_available_name_split_class_and_numbers(tmp_path):
    images = images_frame(tmp_path, cats=20, dogs=10)
    with pytest.raises(
        ValueError,
        match=(
            r"split counts \(8, 2, 10\): the test split needs 10 dog images, but only 0 of the "
            r"10 usable dog images are left after train 8, validation 2$"
        ),
    ):
        build_manifest(images, counts=(8, 2, 10), seed=0)
    with pytest.raises(
        ValueError,
        match=r"the train split needs 21 cat images, but only 20 of the 20 usable cat images",
    ):
        build_manifest(images, counts=(21, 0, 0), seed=0)
    with pytest.raises(ValueError, match=r"validation split needs 5 dog images, but only 2 "):
        build_manifest(images, counts=(8, 5, 0), seed=0)
    manifest, dropped = build_manifest(images, counts=(8, 1, 1), seed=0)
    assert len(manifest) == 20 and dropped["unused"] == 10


def test_counts_that_would_break_a_group_are_refused(tmp_path):
    raw = tmp_path / "data" / "raw"
    for label, offset in (("cat", 0), ("dog", 100)):
        original = write_photo(raw / label / f"{label}.0.jpg", seed=offset)
        for k in (1, 2):
            write_resized_copy(
                original, raw / label / f"{label}.copy{k}.jpg", size=(40 + 8 * k, 30 + 6 * k)
            )
        for i in (1, 2):
            write_photo(raw / label / f"{label}.{i}.jpg", seed=offset + i)
    images = scan_images(raw, tmp_path)
    assert images["group"].nunique() == 6  # a group of three and two single photos per class
    with pytest.raises(
        ValueError, match=r"cannot fill the (train|validation|test) split with exactly"
    ):
        build_manifest(images, counts=(1, 2, 2), seed=0)
    manifest, _ = build_manifest(images, counts=(3, 1, 1), seed=0)
    assert manifest.groupby(["split", "label"]).size().to_dict()[("train", "cat")] == 3


def test_groups_spread_over_splits_and_holes_are_filled():
    sizes = [2] * 20 + [1] * 60  # shuffled order: every near-duplicate pair comes first
    assignment, filled = _assign_groups(sizes, (60, 20, 20), use_all=True)
    assert filled == [60, 20, 20] and -1 not in assignment
    pairs_per_split = np.bincount(assignment[:20], minlength=3).tolist()
    assert pairs_per_split == [12, 4, 4]  # in proportion to the targets, not all in one split
    # counts: the group of three is taken but fits nowhere; unused single images fill the holes
    assignment, filled = _assign_groups([3, 1, 1, 1], (2, 1, 0), use_all=False)
    assert filled == [2, 1, 0] and assignment == [-1, 0, 0, 1]
    # counts: a skipped group is swapped in for the last single images when they run short
    assignment, filled = _assign_groups([1] * 17 + [4, 1], (19, 1, 0), use_all=False)
    assert filled == [19, 1, 0] and assignment[17] == 0 and assignment.count(-1) == 2


def test_exactly_one_of_fractions_and_counts(tmp_path):
    images = images_frame(tmp_path, cats=4, dogs=4)
    with pytest.raises(ValueError, match="exactly one of fractions and counts"):
        build_manifest(images, seed=0)
    with pytest.raises(ValueError, match="exactly one of fractions and counts"):
        build_manifest(images, fractions=(0.5, 0.25, 0.25), counts=(2, 1, 1), seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        build_manifest(images, fractions=(0.5, 0.25, 0.5), seed=0)
    with pytest.raises(ValueError, match="non-negative integers"):
        build_manifest(images, counts=(2, 1.5, 1), seed=0)


@pytest.mark.parametrize("sizes", [{"fractions": (0.6, 0.2, 0.2)}, {"counts": (6, 3, 3)}])
def test_manifest_ignores_input_row_order(tmp_path, sizes):
    images = scan_images(photos_with_copies(tmp_path), tmp_path)
    manifest, dropped = build_manifest(images, seed=7, **sizes)
    for state in range(4):
        shuffled = images.sample(frac=1, random_state=state).reset_index(drop=True)
        again, dropped_again = build_manifest(shuffled, seed=7, **sizes)
        assert again.equals(manifest) and dropped_again == dropped


def test_fractions_without_near_duplicates_match_plain_seeded_permutation(tmp_path):
    images = images_frame(tmp_path, cats=13, dogs=11)
    manifest, _ = build_manifest(images, fractions=(0.6, 0.2, 0.2), seed=3)
    for label_index, label in enumerate(("cat", "dog")):
        paths = sorted(images[images["label"] == label]["path"])
        order = np.random.default_rng([3, label_index]).permutation(len(paths))
        n_val, n_test = round(len(paths) * 0.2), round(len(paths) * 0.2)
        n_train = len(paths) - n_val - n_test
        expected = {paths[i]: "train" for i in order[:n_train]}
        expected.update({paths[i]: "validation" for i in order[n_train : n_train + n_val]})
        expected.update({paths[i]: "test" for i in order[n_train + n_val :]})
        got = manifest[manifest["label"] == label].set_index("path")["split"].to_dict()
        assert got == expected


def test_old_style_frames_and_manifests_still_work(tmp_path):
    images = images_frame(tmp_path)[["path", "label", "sha256"]]  # no phash, no group
    manifest, dropped = build_manifest(images, fractions=(0.6, 0.2, 0.2), seed=1)
    assert list(manifest.columns) == [*MANIFEST_COLUMNS, "group", "phash"]
    assert (manifest["phash"] == "").all() and manifest["group"].is_unique
    assert dropped["near_duplicate_groups"] == 0
    path = tmp_path / "old.csv"
    manifest[list(MANIFEST_COLUMNS)].to_csv(path, index=False)
    assert list(read_manifest(path).columns) == list(MANIFEST_COLUMNS)
    manifest.to_csv(path, index=False)
    assert read_manifest(path)["group"].tolist() == manifest["group"].astype(str).tolist()
