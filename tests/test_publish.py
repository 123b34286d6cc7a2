"""A run's results handed back from the machine that ran it: the outputs to the DVC remote, a
commit of dvc.lock and params.yaml to the branch's upstream; a branch that moved meanwhile fails
in one line, with the outputs already pushed."""

from __future__ import annotations

from pathlib import Path

import pytest

from catdog.workspace.publish import PublishError, publish_results
from tests.conftest import bin_dir, project_env, run

DVC = str(bin_dir() / "dvc")
IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def _workspace(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """A git + DVC workspace with one stage run, pushed to a bare ``origin``."""
    env = project_env(
        {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.com"}
        | {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e.com"}
    )
    origin, remote, work = tmp_path / "origin.git", tmp_path / "remote", tmp_path / "work"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    run(["git", "init", "-q", str(work)], tmp_path, env)
    run([DVC, "init", "-q"], work, env)
    run([DVC, "remote", "add", "-d", "team", str(remote)], work, env)
    (work / "params.yaml").write_text("size: 1\n")
    run([DVC, "stage", "add", "-n", "make", "-p", "size", "-o", "out.txt", "echo 1 > out.txt"],
        work, env)  # fmt: skip
    run([DVC, "repro", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "start"], work, env)
    run(["git", "remote", "add", "origin", str(origin)], work, env)
    run(["git", "push", "-q", "-u", "origin", "HEAD"], work, env)
    return work, origin, remote, env


def test_publish_pushes_the_outputs_and_a_commit_of_the_record(tmp_path):
    work, origin, remote, env = _workspace(tmp_path)
    (work / "params.yaml").write_text("size: 2\n")
    said = publish_results(work, "catdog: outputs of a run")
    assert said.startswith("dvc push: "), said
    assert "; git: pushed " in said
    assert any(p.is_file() for p in remote.rglob("*"))  # out.txt is in the DVC remote
    log = run(["git", "log", "--format=%s", "-1"], origin, env).stdout.strip()
    assert log == "catdog: outputs of a run"
    shown = run(["git", "show", "HEAD:params.yaml"], origin, env).stdout
    assert shown == "size: 2\n"
    again = publish_results(work, "catdog: outputs of a run")  # nothing new to record
    assert again.endswith("git: nothing to commit (dvc.lock unchanged)"), again


def test_a_branch_that_moved_meanwhile_fails_in_one_line_after_the_outputs_are_pushed(
    tmp_path, monkeypatch
):
    work, origin, _remote, env = _workspace(tmp_path)
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], tmp_path, env)
    (other / "README").write_text("moved\n")
    run(["git", "add", "README"], other, env)
    run(["git", "commit", "-qm", "someone else"], other, env)
    run(["git", "push", "-q"], other, env)
    (work / "params.yaml").write_text("size: 3\n")
    run([DVC, "repro", "-q"], work, env)
    with pytest.raises(PublishError) as refused:
        publish_results(work, "catdog: outputs of a run")
    message = str(refused.value)
    assert message.startswith("`git push -q origin HEAD` failed in ") and "\n" not in message
    assert "[rejected] HEAD -> " in message
    assert "the outputs and DVC's run cache are in the DVC remote" in message

    # the same run again, in a fresh clone as a worker makes one: restored, not run
    from catdog.workspace.dvc_state import DvcRecord

    retry = tmp_path / "retry"
    run(["git", "clone", "-q", str(origin), str(retry)], tmp_path, env)
    (retry / "params.yaml").write_text("size: 3\n")
    run([DVC, "pull", "-q", "--allow-missing", "--run-cache"], retry, env)
    monkeypatch.chdir(retry)  # where a worker's run is
    record = DvcRecord(retry)
    try:
        with record.locked():
            assert record.is_stale("make") and record.restore("make")
    finally:
        record.close()
    assert (retry / "out.txt").read_text() == "1\n"
