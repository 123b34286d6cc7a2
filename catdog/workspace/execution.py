"""What a pipeline execution is called, the same in MLflow and in Prefect.

An execution is one ``dvc repro``, ``dvc exp run`` or ``catdog run`` (or a ``catdog stage`` run by
hand). Its label names the DVC experiment or the trigger, the time its owner process started and
the short commit, e.g. ``dvc exp run scratch-3 2026-12-01 22:55:03 b2d1e22``: MLflow's parent run
and every child run, and every Prefect flow run of the execution, carry it, so two executions
never look alike in either UI.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from catdog.errors import CatdogError
from catdog.workspace.lock import Owner

__all__ = ["ExecutionInfo", "describe_execution", "git_commit", "require_git_checkout"]


def require_git_checkout(root: Path) -> None:
    """Stop before any work if ``root`` is not in a git repository (a copy without ``.git``).

    Raises:
        CatdogError: naming the folder and how to make it one.
    """
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--git-dir"], cwd=root, capture_output=True, check=False
        )
    except OSError:
        found = None
    if found is None or found.returncode != 0:
        raise CatdogError(
            f"{root}: not a git repository; DVC and catdog record what ran by its git commit: "
            "clone the project (`git clone URL`), or make this copy one (`git init && git add -A "
            "&& git commit -m 'first commit'`), then run this again"
        )


def git_commit(root: Path) -> tuple[str, bool]:
    """The workspace's git commit and whether the tree is dirty ('' if not a git repo)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "", False
    return commit, bool(status.strip())


@dataclass(frozen=True)
class ExecutionInfo:
    """Who runs an execution and on what code: enough to name it and to tag its runs."""

    trigger: str  # dvc repro | dvc exp run | catdog run | catdog stage | prefect deployment
    owner: Owner
    commit: str
    dirty: bool
    exp_name: str = ""  # the DVC experiment's name, under `dvc exp run`
    deployment: str = ""  # the Prefect deployment's name, for a run of one

    @property
    def short_commit(self) -> str:
        if not self.commit:
            return "no-commit"
        return self.commit[:7] + ("-dirty" if self.dirty else "")

    @property
    def started(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.owner.created))

    @property
    def label(self) -> str:
        named = self.exp_name or self.deployment
        what = f"{self.trigger} {named}" if named else self.trigger
        return f"{what} {self.started} {self.short_commit}"

    def tags(self) -> list[str]:
        """Prefect tags that pick out this execution's flow runs in the UI."""
        tags = ["catdog", f"trigger:{self.trigger}", f"commit:{self.short_commit}"]
        if self.exp_name:
            tags.append(f"exp:{self.exp_name}")
        if self.deployment:
            tags.append(f"deployment:{self.deployment}")
        return [*tags, f"execution:{self.label}"]


def describe_execution(
    workspace: Path, trigger: str, owner: Owner, deployment: str = ""
) -> ExecutionInfo:
    """The execution the current process belongs to (DVC sets ``DVC_EXP_NAME`` for experiments);
    ``deployment`` names the Prefect deployment that started it, if one did."""
    commit, dirty = git_commit(workspace)
    exp_name = os.environ.get("DVC_EXP_NAME", "")
    return ExecutionInfo(trigger, owner, commit, dirty, exp_name, deployment)
