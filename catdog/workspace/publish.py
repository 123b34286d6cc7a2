"""Hand a run's results back from a machine that ran it: the outputs to the DVC remote
(``dvc push``), and the record of what made them (``dvc.lock``, ``params.yaml``) as a git commit
pushed to the branch the code came from. Another clone then gets both with ``git pull`` and
``dvc pull``, and its ``dvc status`` is clean.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from catdog.errors import CatdogError

__all__ = ["PublishError", "publish_results"]

RECORD_FILES = ("dvc.lock", "params.yaml")


class PublishError(CatdogError):
    """The results could not be pushed."""


def _reason(error: subprocess.CalledProcessError) -> str:
    """Git's own words for a failure, in one line: the rejected ref, else its first error."""
    lines = [line.strip() for line in (error.stderr or error.stdout or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith("hint:")]
    for mark in ("[rejected]", "error:", "fatal:"):
        found = [line for line in lines if mark in line]
        if found:
            return " ".join(found[0].split())
    return lines[-1] if lines else str(error)


def _git(workspace: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=workspace, capture_output=True, text=True, check=True
        )
    except subprocess.CalledProcessError as error:
        raise PublishError(
            f"`git {' '.join(args)}` failed in {workspace}: {_reason(error)}; the outputs and "
            "DVC's run cache are in the DVC remote, so the same run started again restores its "
            "stages from there instead of running them, and pushes again"
        ) from None
    return done.stdout.strip()


def push_outputs(workspace: Path) -> int:
    """``dvc push --run-cache``: every output ``dvc.lock`` records, and DVC's run cache (so a clone
    that pulls it restores these stages instead of running them), to the default DVC remote;
    the number of files sent."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        try:
            return int(repo.push(run_cache=True))
        except DvcException as error:
            raise PublishError(
                f"dvc push from {workspace} failed: {error}; set a default remote "
                "(`dvc remote add -d NAME URL`, committed in .dvc/config) the workers can reach"
            ) from None


def publish_results(workspace: Path, message: str) -> str:
    """Push the outputs to the DVC remote, commit ``dvc.lock`` and ``params.yaml`` if they changed
    and push the commit to the branch's upstream; return what was done, in one line.

    Raises:
        PublishError: The DVC remote or the git push refused, in one line naming which.
    """
    sent = push_outputs(workspace)
    _git(workspace, "add", "--", *RECORD_FILES)
    if not _git(workspace, "diff", "--cached", "--name-only"):
        return f"dvc push: {sent} files; git: nothing to commit (dvc.lock unchanged)"
    _git(workspace, "commit", "-q", "-m", message)
    commit = _git(workspace, "rev-parse", "--short", "HEAD")
    _git(workspace, "push", "-q", "origin", "HEAD")
    return f"dvc push: {sent} files; git: pushed {commit} ({message})"
