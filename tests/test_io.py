import os

import pytest

from catdog.io import atomic_dir, atomic_file, remove_stale_staging, write_json


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "model.weights.h5"
    with atomic_file(target) as tmp:
        assert tmp.name.endswith(".weights.h5")  # Keras checks the suffix
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.weights.h5"]


def test_atomic_file_gets_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "x.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_dir_keeps_the_old_folder_when_the_block_fails(tmp_path):
    target = tmp_path / "raw"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("1")
    with pytest.raises(ValueError), atomic_dir(target) as staging:
        (staging / "b.txt").write_text("2")
        raise ValueError("bad input")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_dir(target) as staging:
        (staging / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_remove_stale_staging_cleans_leftovers_of_a_killed_run(tmp_path):
    (tmp_path / ".raw.tmp-abc").mkdir()
    (tmp_path / ".manifest.csv.tmp-x.csv").write_text("half")
    (tmp_path / "keep.txt").write_text("k")
    (tmp_path / ".hidden").write_text("h")
    remove_stale_staging(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "keep.txt"]


def test_write_json_is_sorted_and_ends_with_newline(tmp_path):
    text = write_json(tmp_path / "m.json", {"b": 1, "a": 2}).read_text()
    assert text.index('"a"') < text.index('"b"')
    assert text.endswith("\n")
