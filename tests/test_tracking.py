import os
import subprocess
import sys
from pathlib import Path

import yaml

from catdog.tracking.lineage import dvc_hash


def test_dvc_hash_is_dvcs_own_and_its_state_database_notices_changes(tmp_path):
    workspace = tmp_path / "ws"
    tree = workspace / "raw"
    (tree / "cat").mkdir(parents=True)
    (tree / "cat" / "a.jpg").write_bytes(b"one")
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=workspace, check=True)
    subprocess.run([dvc, "add", "-q", "raw"], cwd=workspace, check=True)
    recorded = yaml.safe_load((workspace / "raw.dvc").read_text())["outs"][0]["md5"]
    assert dvc_hash(tree, workspace) == recorded == dvc_hash(tree)  # with DVC's state, without
    (tree / "cat" / "a.jpg").unlink()  # `dvc add` left a link to its cache: write a new file
    (tree / "cat" / "a.jpg").write_bytes(b"two")
    os.utime(tree / "cat" / "a.jpg", ns=(1, 1))
    changed = dvc_hash(tree, workspace)
    assert changed != recorded and changed == dvc_hash(tree) and changed.endswith(".dir")
    assert dvc_hash(tmp_path / "missing", workspace) == ""
