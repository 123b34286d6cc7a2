import os

from tracking.lineage import dvc_hash


def test_dvc_hash_cache_notices_changed_files(tmp_path):
    tree = tmp_path / "raw"
    (tree / "cat").mkdir(parents=True)
    (tree / "cat" / "a.jpg").write_bytes(b"one")
    state = tmp_path / "state"
    state.mkdir()
    first = dvc_hash(tree, state)
    assert first.endswith(".dir") and first == dvc_hash(tree) == dvc_hash(tree, state)
    (tree / "cat" / "a.jpg").write_bytes(b"two")
    os.utime(tree / "cat" / "a.jpg", ns=(1, 1))  # a different size/mtime signature
    changed = dvc_hash(tree, state)
    assert changed != first and changed == dvc_hash(tree)
    assert dvc_hash(tmp_path / "missing", state) == ""
