"""Filesystem faults end in one line, exit 2, and leave nothing a re-run would trust: a disk that
fills up during a stage (not retried as if it were a network hiccup; the run after freeing space
completes), a read-only checkout (refused before any work), a copy without `.git` (refused before
any work, and the README's way to make it a repository works).

A full disk and a read-only checkout are real: a size-limited tmpfs and a read-only bind mount,
which need root; without it these tests are skipped, saying so."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_project_copy, run
from tests.test_failures import quiet

pytestmark = pytest.mark.e2e

CATDOG = str(Path(sys.executable).parent / "catdog")


def mount(*arguments: str) -> None:
    done = subprocess.run(["mount", *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(arguments)}: {done.stderr.strip()} (needs root)")


@contextlib.contextmanager
def mounted(target: Path, *arguments: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    mount(*arguments, str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's last line, once it is shown to be the only error and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-4000:]
    assert "Traceback" not in output and "Retry" not in output, output[-4000:]
    errors = [line for line in output.splitlines() if "catdog: error:" in line]
    assert len(errors) == 1, output[-4000:]
    assert quiet(result.stderr), result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def listing(project: Path) -> list[Path]:
    """Every path in the project, relative to it."""
    return sorted(p.relative_to(project) for p in project.rglob("*"))


def recorded(project: Path) -> dict[str, object]:
    lock = project / "dvc.lock"
    return yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}


def test_a_disk_that_fills_up_fails_in_one_line_and_the_run_after_freeing_space_completes(
    tmp_path, e2e_env
):
    # Ingest, split and augment fit in 40 MB; the features stage's VGG16 base (58 MB) does not.
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=40m", "tmpfs") as disk:
        project = make_project_copy(disk / "catdog")
        failed = run([CATDOG, "run"], project, e2e_env, check=False)
        assert one_line_failure(failed) == (
            f"catdog: error: {project}/data/features: no space left on the device; free some "
            "space, then run the same command again (nothing half-written was kept)"
        )
        assert "features" not in recorded(project) and "augment" in recorded(project)
        assert not (project / "data/features").exists()
        staging = [p.name for p in (project / "data").iterdir() if ".tmp-" in p.name]
        assert staging == []
        mount("-o", "remount,size=2g", str(disk))  # space freed
        run([CATDOG, "run"], project, e2e_env)
        assert {"features", "scratch", "evaluate"} <= set(recorded(project))
        status = run([str(Path(sys.executable).parent / "dvc"), "status"], project, e2e_env)
        assert "up to date" in status.stdout, status.stdout


def test_a_read_only_checkout_is_refused_before_any_work(tmp_path, e2e_env):
    project = make_project_copy(tmp_path / "catdog")
    before = listing(project)
    with mounted(project, "--bind", str(project)):
        mount("-o", "remount,bind,ro", str(project))
        for command in (["run"], ["stage", "ingest"], ["run", "-S", "scratch.epochs=2"]):
            failed = run([CATDOG, *command], project, e2e_env, check=False)
            assert one_line_failure(failed) == (
                f"catdog: error: {project}/.catdog: the file system is read-only; catdog writes "
                "its outputs, dvc.lock and its stores in the workspace: run it from a writable "
                "clone"
            )
    assert listing(project) == before


def test_a_copy_without_git_is_refused_and_the_way_out_works(tmp_path, e2e_env):
    project = make_project_copy(tmp_path / "catdog")
    shutil.rmtree(project / ".git")
    before = listing(project)
    for command in (["run"], ["stage", "ingest", "-S", "data.image_size=40"]):
        failed = run([CATDOG, *command], project, e2e_env, check=False)
        assert one_line_failure(failed) == (
            f"catdog: error: {project}: not a git repository; DVC and catdog record what ran by "
            "its git commit: clone the project (`git clone URL`), or make this copy one (`git "
            "init && git add -A && git commit -m 'first commit'`), then run this again"
        )
    assert listing(project) == before
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    for step in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "first commit"]):
        run(["git", *step], project, e2e_env)
    run([CATDOG, "stage", "ingest"], project, e2e_env)
    assert "ingest" in recorded(project)
