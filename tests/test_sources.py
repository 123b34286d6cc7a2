"""Sources: every common cats/dogs download, as a folder or a zip, and hostile zips."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from catdog.sources import (
    PreparedSource,
    SourceError,
    SourceIssue,
    detect_layout,
    label_files,
    label_for,
    output_stems,
    prepare_source,
    resolve_source,
)
from tests.conftest import write_image

# --------------------------------------------------------------------------------------------
# helpers


def jpeg(seed: int = 0) -> bytes:
    """A tiny distinct JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)).save(
        buffer, format="JPEG"
    )
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes] | list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    """A zip of ``name -> content`` (names may be ZipInfo for odd attributes); may repeat names."""
    items = members.items() if isinstance(members, dict) else members
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names on purpose
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content in items:
                zf.writestr(name, content)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes] | list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(members))
    return path


def write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    for name, content in members.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return folder


def as_source(kind: str, tmp_path: Path, name: str, members: dict[str, bytes]) -> Path:
    """The same members as a folder, or as a zip, under ``tmp_path/given``."""
    if kind == "folder":
        return write_folder(tmp_path / "given" / name, members)
    return write_zip(tmp_path / "given" / f"{name}.zip", members)


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def everything_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def labels(prepared: PreparedSource) -> dict[str, str | None]:
    return {path.as_posix(): label for path, label in label_files(prepared.root)}


def issues_by_path(prepared: PreparedSource) -> dict[str, str]:
    assert all(issue.status == "rejected" for issue in prepared.issues)
    return {issue.path: issue.reason for issue in prepared.issues}


def patch_member(
    data: bytes,
    name: str,
    *,
    flag_bits: int | None = None,
    file_size: int | None = None,
    crc: int | None = None,
) -> bytes:
    """Rewrite header fields of one member, in its local header and its central-directory entry."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        local = zf.getinfo(name).header_offset
        central = zf.start_dir
    # local header: flags at +6, crc at +14, uncompressed size at +22
    # central entry: flags at +8, crc at +16, uncompressed size at +24
    entries = [(local, 6, 14, 22)]
    offset = central
    while raw[offset : offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, offset + 28)
        if raw[offset + 46 : offset + 46 + name_len].decode() == name:
            entries.append((offset, 8, 16, 24))
        offset += 46 + name_len + extra_len + comment_len
    assert len(entries) == 2, "member not found in the central directory"
    for start, flags_at, crc_at, size_at in entries:
        if flag_bits is not None:
            struct.pack_into("<H", raw, start + flags_at, flag_bits)
        if crc is not None:
            struct.pack_into("<I", raw, start + crc_at, crc)
        if file_size is not None:
            struct.pack_into("<I", raw, start + size_at, file_size)
    return bytes(raw)


def special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = mode << 16
    return info


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The extraction folder, one level below a sandbox folder that must stay otherwise empty."""
    folder = tmp_path / "sandbox" / "work"
    folder.mkdir(parents=True)
    return folder


def assert_nothing_outside(tmp_path: Path, before: set[str], work: Path) -> None:
    inside = work.relative_to(tmp_path).as_posix()
    new = everything_under(tmp_path) - before
    assert {p for p in new if p != inside and not p.startswith(inside + "/")} == set()
    assert sorted(p.name for p in work.parent.iterdir()) == ["work"]


# --------------------------------------------------------------------------------------------
# layouts, each as a folder and as a zip

FLAT = {
    "cat.0.jpg": jpeg(1),
    "Cat.1.JPG": jpeg(2),
    "dog.0.jpg": jpeg(3),
    "DOG_1.jpeg": jpeg(4),
    "dog-2.png": jpeg(5),
    "catalog.jpg": jpeg(6),
    "notes.txt": b"hello",
    ".DS_Store": b"\0\0",
}
FLAT_LABELS = {
    ".DS_Store": None,
    "Cat.1.JPG": "cat",
    "DOG_1.jpeg": "dog",
    "cat.0.jpg": "cat",
    "catalog.jpg": None,
    "dog-2.png": "dog",
    "dog.0.jpg": "dog",
    "notes.txt": None,
}


def test_flat_folder_is_used_in_place(tmp_path):
    source = as_source("folder", tmp_path, "photos", FLAT)
    work = tmp_path / "work"
    prepared = prepare_source(source, work)
    assert prepared == PreparedSource(root=source, layout="flat", issues=(), prefix="")
    assert labels(prepared) == FLAT_LABELS
    assert [p for p, _ in label_files(source)] == sorted(Path(n) for n in FLAT)
    assert not work.exists()  # nothing copied


def test_flat_zip_is_extracted_exactly(tmp_path, work):
    source = as_source("zip", tmp_path, "photos", FLAT)
    prepared = prepare_source(source, work)
    assert prepared == PreparedSource(root=work, layout="flat", issues=(), prefix="photos.zip/")
    assert files_under(work) == FLAT
    assert labels(prepared) == FLAT_LABELS
    assert prepared.report_path(Path("cat.0.jpg")) == "photos.zip/cat.0.jpg"


@pytest.mark.parametrize("kind", ["folder", "zip"])
@pytest.mark.parametrize(
    ("cat_dir", "dog_dir"),
    [("cats", "dogs"), ("cat", "dog"), ("Cat", "Dog"), ("CATS", "Dogs"), ("cAt", "DOGS")],
)
def test_class_folders_in_every_spelling(tmp_path, work, kind, cat_dir, dog_dir):
    members = {
        f"{cat_dir}/IMG_001.jpg": jpeg(1),
        f"{cat_dir}/sub/IMG_002.jpg": jpeg(2),
        f"{dog_dir}/holiday.jpeg": jpeg(3),
        "birds/IMG_003.jpg": jpeg(4),
        "README.txt": b"my pets",
    }
    prepared = prepare_source(as_source(kind, tmp_path, "mine", members), work)
    assert prepared.layout == "class_folders"
    assert prepared.issues == ()
    assert labels(prepared) == {
        "README.txt": None,
        "birds/IMG_003.jpg": None,
        f"{cat_dir}/IMG_001.jpg": "cat",
        f"{cat_dir}/sub/IMG_002.jpg": "cat",
        f"{dog_dir}/holiday.jpeg": "dog",
    }
    if kind == "zip":
        assert files_under(work) == members


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_class_folders_nested_below_a_top_folder(tmp_path, work, kind):
    members = {
        "photos/cats/a.jpg": jpeg(1),
        "photos/Dogs/b.jpg": jpeg(2),
        "photos/dogs/c.jpg": jpeg(3),
        "photos/index.html": b"<html>",
    }
    prepared = prepare_source(as_source(kind, tmp_path, "upload", members), work)
    assert prepared.layout == "nested_class_folders"
    assert labels(prepared) == {
        "photos/Dogs/b.jpg": "dog",
        "photos/cats/a.jpg": "cat",
        "photos/dogs/c.jpg": "dog",
        "photos/index.html": None,
    }


PET_IMAGES = {
    "CDLA-Permissive-2.0.pdf": b"%PDF-1.4",
    "readme[1].txt": b"Microsoft PetImages",
    "PetImages/Cat/0.jpg": jpeg(1),
    "PetImages/Cat/666.jpg": b"",  # zero bytes, as in the real download
    "PetImages/Cat/Thumbs.db": b"\xd0\xcf\x11\xe0",
    "PetImages/Dog/0.jpg": jpeg(2),
    "PetImages/Dog/11702.jpg": jpeg(3)[:40],  # truncated JPEG
    "PetImages/Dog/Thumbs.db": b"\xd0\xcf\x11\xe0",
}


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_pet_images(tmp_path, work, kind):
    prepared = prepare_source(as_source(kind, tmp_path, "kagglecatsanddogs_5340", PET_IMAGES), work)
    assert prepared.layout == "nested_class_folders"
    assert prepared.issues == ()
    # broken files and debris are listed as they are: the ingest rejects or skips them
    assert labels(prepared) == {
        "CDLA-Permissive-2.0.pdf": None,
        "PetImages/Cat/0.jpg": "cat",
        "PetImages/Cat/666.jpg": "cat",
        "PetImages/Cat/Thumbs.db": "cat",
        "PetImages/Dog/0.jpg": "dog",
        "PetImages/Dog/11702.jpg": "dog",
        "PetImages/Dog/Thumbs.db": "dog",
        "readme[1].txt": None,
    }
    assert files_under(prepared.root) == PET_IMAGES


TRAIN = {
    "train/cat.0.jpg": jpeg(1),
    "train/cat.1.jpg": jpeg(2),
    "train/dog.0.jpg": jpeg(3),
    "train/dog.1.jpg": jpeg(4),
}
TEST1 = {"test1/1.jpg": jpeg(5), "test1/2.jpg": jpeg(6)}


def test_kaggle_competition_archive_extracts_inner_zips(tmp_path, work):
    outer = write_zip(
        tmp_path / "given" / "dogs-vs-cats.zip",
        {
            "sampleSubmission.csv": b"id,label\n1,0\n",
            "test1.zip": zip_bytes(TEST1),
            "train.zip": zip_bytes(TRAIN),
        },
    )
    prepared = prepare_source(outer, work)
    assert prepared.issues == ()
    assert prepared.layout == "flat"
    expected = {
        "sampleSubmission.csv": b"id,label\n1,0\n",
        **{f"test1.zip/{name}": content for name, content in TEST1.items()},
        **{f"train.zip/{name}": content for name, content in TRAIN.items()},
    }
    # the inner archives are replaced by their content; no staging file is left
    assert files_under(work) == expected
    assert sorted(p.name for p in work.iterdir()) == [
        "sampleSubmission.csv",
        "test1.zip",
        "train.zip",
    ]
    assert all(p.is_dir() for p in work.glob("*.zip"))
    assert labels(prepared) == {
        "sampleSubmission.csv": None,
        "test1.zip/test1/1.jpg": None,
        "test1.zip/test1/2.jpg": None,
        "train.zip/train/cat.0.jpg": "cat",
        "train.zip/train/cat.1.jpg": "cat",
        "train.zip/train/dog.0.jpg": "dog",
        "train.zip/train/dog.1.jpg": "dog",
    }
    assert (
        prepared.report_path(Path("train.zip/train/cat.1.jpg"))
        == "dogs-vs-cats.zip/train.zip/train/cat.1.jpg"
    )


def test_kaggle_train_zip_alone_and_unpacked_folder(tmp_path, work):
    prepared = prepare_source(write_zip(tmp_path / "train.zip", TRAIN), work)
    assert prepared.layout == "flat"
    assert labels(prepared) == {name: name[6:9] for name in TRAIN}
    folder = write_folder(tmp_path / "kaggle", {**TRAIN, **TEST1})
    prepared = prepare_source(folder, tmp_path / "unused")
    assert prepared.layout == "flat"
    assert labels(prepared) == {**{n: n[6:9] for n in TRAIN}, **dict.fromkeys(TEST1)}


def test_macos_archive_debris_is_listed_not_unpacked(tmp_path, work):
    # Finder's zips carry AppleDouble files, which are not zips even when named ._x.zip
    source = write_zip(
        tmp_path / "mac.zip",
        {
            "cats/a.jpg": jpeg(1),
            "dogs/b.jpg": jpeg(2),
            "__MACOSX/cats/._a.jpg": b"\0\5\26\7",
            "__MACOSX/._train.zip": b"\0\5\26\7",
            ".hidden.zip": b"not a zip",
        },
    )
    prepared = prepare_source(source, work)
    assert prepared.issues == ()
    assert prepared.layout == "class_folders"
    assert labels(prepared) == {
        ".hidden.zip": None,
        "__MACOSX/._train.zip": None,
        "__MACOSX/cats/._a.jpg": "cat",
        "cats/a.jpg": "cat",
        "dogs/b.jpg": "dog",
    }


def test_directory_entries_are_created(tmp_path, work):
    source = write_zip(
        tmp_path / "d.zip", [("cats/", b""), ("empty/", b""), ("cats/a.jpg", jpeg())]
    )
    prepared = prepare_source(source, work)
    assert prepared.issues == ()
    assert (work / "empty").is_dir()
    assert files_under(work) == {"cats/a.jpg": jpeg()}


# --------------------------------------------------------------------------------------------
# labels and layouts


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("cat.12.jpg", "cat"),
        ("train/DOG.3.JPEG", "dog"),
        ("dog_7.jpeg", "dog"),
        ("catalog.jpg", None),
        ("cats.1.jpg", None),
        ("photos/Cats/IMG_1.jpg", "cat"),
        ("dogs/cats/x.jpg", "cat"),  # the nearest class folder
        ("cats/deep/er/x.jpg", "cat"),
        ("dogs/dog.4.jpg", "dog"),  # name and folder agree
        ("dogs/cat.5.jpg", None),  # name and folder disagree: ambiguous
        ("dogsled/x.jpg", None),
        ("x.jpg", None),
    ],
)
def test_label_for(path, label):
    assert label_for(Path(path)) == label


def test_detect_layout_counts_only_labelled_images():
    def layout(*paths: str) -> str:
        return detect_layout([(Path(p), label_for(Path(p))) for p in paths])

    assert layout("cat.1.jpg", "dog.1.jpg", "notes.txt") == "flat"
    assert layout("train/cat.1.jpg", "test1/1.jpg") == "flat"
    assert layout("cats/1.jpg", "dogs/1.jpg", ".DS_Store", "cat.txt") == "class_folders"
    assert layout("a/cats/1.jpg", "a/dogs/1.jpg", "a/cats/Thumbs.db") == "nested_class_folders"
    assert layout("a/cats/1.jpg", "__MACOSX/a/cats/._1.jpg", ".cats/x.jpg") == (
        "nested_class_folders"
    )
    assert layout("cat.1.jpg", "dogs/1.jpg") == "mixed"
    assert layout("1.jpg", "notes.txt", "cats/.hidden.jpg") == "unlabelled"
    assert layout() == "unlabelled"


def test_output_stems_are_distinct_and_safe():
    stems = output_stems(
        [
            Path("train.zip/train/cat.0.jpg"),
            Path("train.zip/train/dog.0.jpg"),
        ]
    )
    assert stems == {
        Path("train.zip/train/cat.0.jpg"): "cat.0",
        Path("train.zip/train/dog.0.jpg"): "dog.0",
    }
    assert output_stems([Path("cat.3.jpg")]) == {Path("cat.3.jpg"): "cat.3"}
    stems = output_stems([Path("PetImages/Cat/0.jpg"), Path("PetImages/Dog/0.jpg")])
    assert stems == {Path("PetImages/Cat/0.jpg"): "Cat__0", Path("PetImages/Dog/0.jpg"): "Dog__0"}
    clashing = [Path("a__b/c.jpg"), Path("a/b__c.jpg"), Path("x.jpg"), Path("x.png"), Path("é.jpg")]
    stems = output_stems(clashing)
    assert len(set(stems.values())) == len(clashing)
    assert stems[Path("é.jpg")] == "_"
    assert stems[Path("x.jpg")].startswith("x-") and len(stems[Path("x.jpg")]) == 12
    assert output_stems(list(reversed(clashing))) == stems  # independent of order
    long = Path("cats/" + "x" * 300 + ".jpg")
    assert len(output_stems([long])[long]) <= 131


# --------------------------------------------------------------------------------------------
# hostile zips


def test_unsafe_members_are_rejected_and_nothing_escapes(tmp_path, work):
    source = write_zip(
        tmp_path / "hostile.zip",
        [
            ("cats/ok.jpg", jpeg(1)),
            (zipfile.ZipInfo("../evil.jpg"), b"evil"),
            (zipfile.ZipInfo("../../evil2.jpg"), b"evil"),
            (zipfile.ZipInfo("cats/../../../evil3.jpg"), b"evil"),
            (zipfile.ZipInfo("/abs/evil.jpg"), b"evil"),
            (zipfile.ZipInfo("C:\\evil.jpg"), b"evil"),
            (zipfile.ZipInfo("c:evil.jpg"), b"evil"),
            (zipfile.ZipInfo("..\\evil4.jpg"), b"evil"),
            (zipfile.ZipInfo("../sandbox/"), b""),
            (special("cats/link.jpg", stat.S_IFLNK | 0o777), b"/etc/passwd"),
            (special("linkdir", stat.S_IFLNK | 0o777), b"../.."),
            (special("cats/fifo.jpg", stat.S_IFIFO | 0o644), b""),
            (special("cats/setuid.jpg", stat.S_IFREG | 0o4755), jpeg(2)),
            ("dogs/dup.jpg", jpeg(3)),
            ("dogs/dup.jpg", jpeg(4)),
            ("dogs/./a//dup.jpg", jpeg(5)),
            ("dogs/a/dup.jpg", jpeg(6)),
            ("dogs", b"a file where a folder is"),
            ("cats/ok.jpg/x.jpg", b"a folder where a file is"),
            ("x" * 256 + ".jpg", b"long"),
        ],
    )
    before = everything_under(tmp_path)
    prepared = prepare_source(source, work)
    assert files_under(work) == {
        "cats/ok.jpg": jpeg(1),
        "cats/setuid.jpg": jpeg(2),
        "dogs/dup.jpg": jpeg(3),  # the first of the duplicates
        "dogs/a/dup.jpg": jpeg(5),
    }
    assert not (work / "cats/setuid.jpg").stat().st_mode & stat.S_ISUID
    reasons = issues_by_path(prepared)
    expected = {
        "hostile.zip/../evil.jpg": "'..'",
        "hostile.zip/../../evil2.jpg": "'..'",
        "hostile.zip/cats/../../../evil3.jpg": "'..'",
        "hostile.zip//abs/evil.jpg": "absolute",
        "hostile.zip/C:\\evil.jpg": "absolute",
        "hostile.zip/c:evil.jpg": "absolute",
        "hostile.zip/..\\evil4.jpg": "'..'",
        "hostile.zip/../sandbox/": "'..'",
        "hostile.zip/cats/link.jpg": "symbolic link",
        "hostile.zip/linkdir": "symbolic link",
        "hostile.zip/cats/fifo.jpg": "not a regular file",
        "hostile.zip/dogs/dup.jpg": "duplicate",
        "hostile.zip/dogs/a/dup.jpg": "duplicate",
        "hostile.zip/dogs": "conflicts with a folder",
        "hostile.zip/cats/ok.jpg/x.jpg": "conflicts with the file cats/ok.jpg",
        "hostile.zip/" + "x" * 256 + ".jpg": "longer than 255 bytes",
    }
    assert set(reasons) == set(expected)
    for path, words in expected.items():
        assert words in reasons[path], (path, reasons[path])
    assert all(issue.status == "rejected" for issue in prepared.issues)
    assert_nothing_outside(tmp_path, before, work)
    assert not Path("/abs/evil.jpg").exists()
    assert not any(p.is_symlink() for p in work.rglob("*"))


def test_encrypted_member_is_rejected(tmp_path, work):
    data = zip_bytes({"cats/a.jpg": jpeg(1), "cats/secret.jpg": jpeg(2)})
    source = tmp_path / "enc.zip"
    source.write_bytes(patch_member(data, "cats/secret.jpg", flag_bits=0x1))
    prepared = prepare_source(source, work)
    assert prepared.issues == (
        SourceIssue("enc.zip/cats/secret.jpg", "rejected", "encrypted (password-protected) member"),
    )
    assert files_under(work) == {"cats/a.jpg": jpeg(1)}


def test_oversized_members_are_refused_before_writing(tmp_path, work):
    bomb = b"\0" * (8 * 1024 * 1024)  # compresses to a few KiB
    source = write_zip(
        tmp_path / "bomb.zip", {"cats/bomb.jpg": bomb, "cats/a.jpg": jpeg(1), "dogs/b.jpg": jpeg(2)}
    )
    assert source.stat().st_size < 100_000
    before = everything_under(tmp_path)
    prepared = prepare_source(source, work, max_member_bytes=1024 * 1024)
    assert files_under(work) == {"cats/a.jpg": jpeg(1), "dogs/b.jpg": jpeg(2)}
    (issue,) = prepared.issues
    assert issue.path == "bomb.zip/cats/bomb.jpg"
    assert "exceeds max_member_bytes=1048576" in issue.reason
    assert_nothing_outside(tmp_path, before, work)


def test_total_size_limit(tmp_path, work):
    members = {f"cats/{i}.bin": bytes([i]) * 400 for i in range(4)}
    prepared = prepare_source(write_zip(tmp_path / "t.zip", members), work, max_total_bytes=1000)
    assert files_under(work) == {
        "cats/0.bin": members["cats/0.bin"],
        "cats/1.bin": members["cats/1.bin"],
    }
    assert set(issues_by_path(prepared)) == {"t.zip/cats/2.bin", "t.zip/cats/3.bin"}
    assert all("max_total_bytes=1000" in issue.reason for issue in prepared.issues)


def test_total_size_limit_counts_nested_archives(tmp_path, work):
    inner = zip_bytes({f"cats/{i}.bin": bytes([i]) * 400 for i in range(4)})
    outer = write_zip(tmp_path / "o.zip", {"inner.zip": inner})
    prepared = prepare_source(outer, work, max_total_bytes=len(inner) + 1000)
    assert sorted(files_under(work)) == ["inner.zip/cats/0.bin", "inner.zip/cats/1.bin"]
    assert set(issues_by_path(prepared)) == {
        "o.zip/inner.zip/cats/2.bin",
        "o.zip/inner.zip/cats/3.bin",
    }


def test_member_giving_more_than_declared_is_cut_off(tmp_path, work, monkeypatch):
    # zipfile itself stops at the declared size; this checks our own guard behind it
    source = write_zip(tmp_path / "liar.zip", {"cats/liar.jpg": b"x" * 100, "cats/a.jpg": jpeg(1)})
    real_open = zipfile.ZipFile.open

    def lying_open(self, name, *args, **kwargs):
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        if info.filename == "cats/liar.jpg":
            return io.BytesIO(b"x" * 10_000)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    prepared = prepare_source(source, work)
    assert files_under(work) == {"cats/a.jpg": jpeg(1)}
    (issue,) = prepared.issues
    assert issue.path == "liar.zip/cats/liar.jpg"
    assert "more than its declared size of 100 bytes" in issue.reason


def test_lying_size_header_never_yields_more_than_declared(tmp_path, work):
    content = jpeg(1) * 20
    data = zip_bytes({"cats/a.jpg": jpeg(2), "cats/liar.jpg": content})
    # the header says 100 bytes and the CRC matches those 100: zipfile gives exactly 100
    source = tmp_path / "liar.zip"
    source.write_bytes(
        patch_member(data, "cats/liar.jpg", file_size=100, crc=zlib.crc32(content[:100]))
    )
    prepare_source(source, work)
    assert files_under(work) == {"cats/a.jpg": jpeg(2), "cats/liar.jpg": content[:100]}


def test_lying_size_header_with_the_real_crc_is_a_corrupt_archive(tmp_path, work):
    data = zip_bytes({"cats/a.jpg": jpeg(2), "cats/liar.jpg": jpeg(1) * 20})
    source = tmp_path / "liar.zip"
    source.write_bytes(patch_member(data, "cats/liar.jpg", file_size=100))
    before = everything_under(tmp_path)
    with pytest.raises(SourceError, match=r"liar\.zip is a corrupt or unreadable zip"):
        prepare_source(source, work)
    assert list(work.iterdir()) == []
    assert_nothing_outside(tmp_path, before, work)


def test_nested_zip_depth_is_limited(tmp_path, work):
    level3 = zip_bytes({"cats/deep.jpg": jpeg(1)})
    level2 = zip_bytes({"c.zip": level3, "dogs/two.jpg": jpeg(2)})
    level1 = zip_bytes({"b.zip": level2, "cats/one.jpg": jpeg(3)})
    source = write_zip(tmp_path / "a.zip", {"one.zip": level1})
    prepared = prepare_source(source, work, max_depth=2)
    assert sorted(files_under(work)) == [
        "one.zip/b.zip/dogs/two.jpg",
        "one.zip/cats/one.jpg",
    ]
    assert issues_by_path(prepared) == {
        "a.zip/one.zip/b.zip/c.zip": "zip nested deeper than 2 levels"
    }
    # with the default limit everything is unpacked
    work2 = tmp_path / "work2"
    prepared = prepare_source(source, work2)
    assert prepared.issues == ()
    assert "one.zip/b.zip/c.zip/cats/deep.jpg" in files_under(work2)


def test_too_many_members_fail(tmp_path, work):
    source = write_zip(tmp_path / "many.zip", {f"cats/{i}.jpg": b"" for i in range(5)})
    with pytest.raises(SourceError, match="more than 4 archive entries"):
        prepare_source(source, work, max_members=4)
    assert list(work.iterdir()) == []


# --------------------------------------------------------------------------------------------
# corrupt archives leave nothing behind


def test_truncated_archive(tmp_path, work):
    data = zip_bytes({"cats/a.jpg": jpeg(1), "dogs/b.jpg": jpeg(2)})
    source = tmp_path / "cut.zip"
    source.write_bytes(data[: len(data) // 2])
    before = everything_under(tmp_path)
    with pytest.raises(SourceError) as caught:
        prepare_source(source, work)
    assert f"data.source: {source} is a corrupt or unreadable zip" in str(caught.value)
    assert "download it again" in str(caught.value)
    assert list(work.iterdir()) == []
    assert_nothing_outside(tmp_path, before, work)


def test_bad_crc_after_good_members_removes_what_was_written(tmp_path, work):
    payload = b"THE-THIRD-MEMBER" * 64
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("cats/a.jpg", jpeg(1))
        zf.writestr("dogs/b.jpg", jpeg(2))
        zf.writestr("dogs/c.jpg", payload)
    data = bytearray(buffer.getvalue())
    at = data.index(payload) + 10
    data[at] ^= 0xFF
    source = tmp_path / "crc.zip"
    source.write_bytes(bytes(data))
    before = everything_under(tmp_path)
    with pytest.raises(SourceError, match=r"crc\.zip is a corrupt.*Bad CRC-32"):
        prepare_source(source, work)
    assert work.is_dir()
    assert list(work.iterdir()) == []
    assert_nothing_outside(tmp_path, before, work)


def test_corrupt_inner_zip_names_it_and_leaves_nothing(tmp_path, work):
    inner = zip_bytes(TRAIN)
    source = write_zip(
        tmp_path / "dogs-vs-cats.zip", {"test1.zip": zip_bytes(TEST1), "train.zip": inner[:-30]}
    )
    with pytest.raises(SourceError) as caught:
        prepare_source(source, work)
    assert f"data.source: {source}/train.zip is a corrupt" in str(caught.value)
    assert list(work.iterdir()) == []


def test_zip_name_on_something_else(tmp_path, work):
    source = tmp_path / "photos.zip"
    source.write_bytes(jpeg(1))
    with pytest.raises(SourceError, match=r"photos\.zip is a corrupt or unreadable zip"):
        prepare_source(source, work)
    assert list(work.iterdir()) == []


# --------------------------------------------------------------------------------------------
# sources that are not sources


@pytest.mark.parametrize("name", ["photos.tar.gz", "cat.1.jpg", "notes"])
def test_neither_folder_nor_zip(tmp_path, work, name):
    source = tmp_path / name
    source.write_bytes(b"data")
    with pytest.raises(SourceError) as caught:
        prepare_source(source, work)
    message = str(caught.value)
    assert f"data.source: {source} is not a folder or a .zip" in message
    assert "cat.N.jpg/dog.N.jpg, class folders cats/ dogs/, or a zip of either" in message


def test_missing_source(tmp_path, work):
    with pytest.raises(SourceError, match=r"does not exist; give a folder"):
        prepare_source(tmp_path / "nowhere.zip", work)
    assert isinstance(SourceError("x"), ValueError)


def test_work_dir_must_be_empty(tmp_path, work):
    (work / "old.jpg").write_bytes(b"old")
    with pytest.raises(SourceError, match="must be empty"):
        prepare_source(write_zip(tmp_path / "p.zip", {"cats/a.jpg": jpeg()}), work)
    assert files_under(work) == {"old.jpg": b"old"}


@pytest.mark.parametrize("target", ["self", "missing.jpg"])
def test_a_link_that_cannot_be_followed_is_named_before_any_work(tmp_path, target):
    source = tmp_path / "photos"
    write_image(source / "cats" / "cat.1.jpg")
    write_image(source / "dogs" / "dog.1.jpg")
    link = source / "cats" / "self"
    link.symlink_to(source / "cats" / target)  # a loop onto itself, or a dangling link
    with pytest.raises(SourceError) as error:
        resolve_source(str(source), tmp_path)
    assert str(error.value).startswith(
        f"data.source: {link} is a symbolic link that cannot be followed"
    )
