import json

import pytest
from PIL import Image

from catdog.ingest import IngestError, check_image, ingest_folder
from catdog.sources import label_for as label_of
from tests.conftest import write_image


def run_ingest(source, out, **kwargs):
    options = {"max_pixels": 10_000_000, "min_per_class": 1, "workers": 2}
    return ingest_folder(source, out, **{**options, **kwargs})


def test_flat_folder_is_ingested_with_exact_bytes(flat_folder, tmp_path):
    out = tmp_path / "raw"
    report = run_ingest(flat_folder, out)
    assert report.counts == {
        "accepted": 12,
        "rejected": 0,
        "skipped": 0,
        "per_class": {"cat": 6, "dog": 6},
    }
    assert (out / "cat" / "cat.3.jpg").read_bytes() == (flat_folder / "cat.3.jpg").read_bytes()
    assert sorted(p.name for p in (out / "dog").iterdir()) == [f"dog.{i}.jpg" for i in range(6)]


def test_bad_files_are_rejected_or_skipped_with_reasons(flat_folder, tmp_path):
    (flat_folder / "cat.90.jpg").write_bytes(b"")
    good = (flat_folder / "cat.0.jpg").read_bytes()
    (flat_folder / "cat.91.jpg").write_bytes(good[: len(good) // 2])
    (flat_folder / "dog.92.jpg").write_text("this is not a picture")
    write_image(flat_folder / "dog.93.jpg", fmt="PNG", seed=5)  # PNG behind a .jpg name
    write_image(flat_folder / "cat.94.jpg", mode="CMYK", seed=6)
    write_image(flat_folder / "dog.95.png", mode="L", fmt="PNG", seed=7)
    write_image(flat_folder / "cat.96.jpg", size=(400, 400), seed=8)  # over max_pixels below
    write_image(flat_folder / "bird.1.jpg", seed=9)
    (flat_folder / ".DS_Store").write_bytes(b"\0\0")
    (flat_folder / "Thumbs.db").write_bytes(b"\0\0")
    (flat_folder / "notes.txt").write_text("hello")
    out = tmp_path / "raw"
    report = run_ingest(flat_folder, out, max_pixels=100_000)
    rejected = {r["path"]: r["reason"] for r in report.to_json()["rejected"]}
    skipped = {r["path"]: r["reason"] for r in report.to_json()["skipped"]}
    assert set(rejected) == {"cat.90.jpg", "cat.91.jpg", "dog.92.jpg", "cat.96.jpg"}
    assert "empty" in rejected["cat.90.jpg"]
    assert "decode" in rejected["cat.91.jpg"]
    assert "not an image" in rejected["dog.92.jpg"]
    assert "bomb" in rejected["cat.96.jpg"]
    assert set(skipped) == {"bird.1.jpg", ".DS_Store", "Thumbs.db", "notes.txt"}
    assert "label" in skipped["bird.1.jpg"]
    # converted images are stored losslessly as RGB PNG
    for name in ("dog/dog.93.png", "cat/cat.94.png", "dog/dog.95.png"):
        with Image.open(out / name) as image:
            assert (image.format, image.mode) == ("PNG", "RGB")
    assert report.counts["accepted"] == 12 + 3


def test_report_is_json_serialisable_with_relative_paths(flat_folder, tmp_path):
    report = run_ingest(flat_folder, tmp_path / "raw")
    data = json.loads(json.dumps(report.to_json()))
    assert {row["path"] for row in data["accepted"]} == {p.name for p in flat_folder.iterdir()}
    assert all(len(row["sha256"]) == 64 for row in data["accepted"])


def test_a_class_below_the_minimum_fails_naming_it(flat_folder, tmp_path):
    for path in flat_folder.glob("dog.*"):
        path.unlink()
    with pytest.raises(IngestError, match=r"dog: 0.*min_per_class=1"):
        run_ingest(flat_folder, tmp_path / "raw")
    with pytest.raises(IngestError, match="not a folder"):
        run_ingest(tmp_path / "missing", tmp_path / "raw")


def test_labels_and_check_image(tmp_path):
    from pathlib import Path

    assert label_of(Path("Cat.12.JPG")) == "cat"
    assert label_of(Path("dog_7.jpeg")) == "dog"
    assert label_of(Path("doge.1.jpg")) is None
    decoded = check_image(write_image(tmp_path / "x.jpg").read_bytes(), max_pixels=10_000)
    assert not isinstance(decoded, str) and decoded.is_rgb_jpeg
    assert check_image(b"", max_pixels=10) == "empty file (0 bytes)"


def test_hostile_zip_corpus_nested_zip_and_unsafe_members(tmp_path):
    """A zip holding every kind of bad file, unsafe members and a nested zip of good ones."""
    import io
    import zipfile

    from catdog.ingest import ingest_source
    from catdog.sources import prepare_source

    def jpeg(seed, mode="RGB", fmt="JPEG", size=(40, 30)):
        path = write_image(
            tmp_path / "scratch" / f"{seed}.img", size=size, mode=mode, fmt=fmt, seed=seed
        )
        return path.read_bytes()

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("train/cat.100.jpg", jpeg(100))
        archive.writestr("train/dog.100.jpg", jpeg(101))
    good = jpeg(1)
    source = tmp_path / "download.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("photos/cats/a.jpg", good)
        archive.writestr("photos/dogs/b.jpg", jpeg(2))
        archive.writestr("photos/cats/truncated.jpg", good[: len(good) // 2])
        archive.writestr("photos/cats/empty.jpg", b"")
        archive.writestr("photos/dogs/text.jpg", b"hello, not a picture")
        archive.writestr("photos/dogs/png-named.jpg", jpeg(3, fmt="PNG"))
        archive.writestr("photos/cats/cmyk.jpg", jpeg(4, mode="CMYK"))
        archive.writestr("photos/dogs/gray.jpg", jpeg(5, mode="L"))
        archive.writestr("photos/dogs/bomb.png", jpeg(6, mode="L", fmt="PNG", size=(600, 600)))
        archive.writestr("photos/birds/c.jpg", jpeg(7))
        archive.writestr("photos/cats/.DS_Store", b"\0")
        archive.writestr("../evil.jpg", good)
        archive.writestr("/abs/evil.jpg", good)
        archive.writestr("train.zip", inner.getvalue())
    work = tmp_path / "work"
    before = set(tmp_path.iterdir())
    prepared = prepare_source(source, work)
    report = ingest_source(prepared, tmp_path / "raw", max_pixels=100_000, min_per_class=1)
    data = report.to_json()
    accepted = sorted(row["path"] for row in data["accepted"])
    rejected = {row["path"]: row["reason"] for row in data["rejected"]}
    skipped = {row["path"]: row["reason"] for row in data["skipped"]}
    prefix = "download.zip/"
    assert accepted == sorted(
        prefix + p
        for p in [
            "photos/cats/a.jpg",
            "photos/dogs/b.jpg",
            "photos/dogs/png-named.jpg",
            "photos/cats/cmyk.jpg",
            "photos/dogs/gray.jpg",
            "train.zip/train/cat.100.jpg",
            "train.zip/train/dog.100.jpg",
        ]
    )
    assert set(rejected) == {
        prefix + p
        for p in [
            "photos/cats/truncated.jpg",
            "photos/cats/empty.jpg",
            "photos/dogs/text.jpg",
            "photos/dogs/bomb.png",
            "../evil.jpg",
            "/abs/evil.jpg",
        ]
    }
    assert "bomb" in rejected[prefix + "photos/dogs/bomb.png"]
    assert ".." in rejected[prefix + "../evil.jpg"] or "outside" in rejected[prefix + "../evil.jpg"]
    assert set(skipped) == {prefix + "photos/birds/c.jpg", prefix + "photos/cats/.DS_Store"}
    # nothing written outside the extraction folder and the output
    assert set(tmp_path.iterdir()) - before == {work, tmp_path / "raw"}
    assert report.counts["per_class"] == {"cat": 3, "dog": 4}
