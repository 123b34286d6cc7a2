"""DVC's record of what is done (``dvc.lock`` and the DVC cache), through DVC's Python API.

``catdog run`` and a ``catdog stage`` run by hand ask DVC which stages are stale (a stage's
``changed()``: its code, data or params differ from what ``dvc.lock`` recorded, or its outputs
are missing or modified), restore a stage from DVC's run cache when these exact inputs were run
before (as ``dvc repro`` does), and record each stage they finish as ``dvc commit`` would. So
``dvc status``, ``dvc push``, ``dvc exp show`` and a later ``dvc repro`` see their work, and they
see DVC's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from catdog.workspace.lock import WorkspaceBusyError

__all__ = ["DvcRecord"]


def _lock_holder(lock_file: Path) -> str:
    """Who holds DVC's repository lock, as `command` (pid N), from the pid in the lock file."""
    try:
        pid = int(lock_file.read_text().split()[0])
        words = psutil.Process(pid).cmdline()
    except (OSError, ValueError, IndexError, psutil.Error):
        return "another DVC process"
    return f"`{' '.join(Path(w).name if i == 0 else w for i, w in enumerate(words))}` (pid {pid})"


class DvcRecord:
    """One workspace's stages as DVC sees them; :meth:`locked` holds DVC's repository lock."""

    def __init__(self, workspace: Path) -> None:
        from dvc.repo import Repo  # DVC's import costs ~1 s: only processes that use it pay

        # DVC prints through a handler of its own; not again through Prefect's console
        logging.getLogger("dvc").propagate = False
        self.workspace = workspace
        self.repo = Repo(str(workspace))

    @contextlib.contextmanager
    def locked(self) -> Iterator[DvcRecord]:
        """Hold DVC's repository lock, so ``dvc repro`` and ``dvc exp run`` wait their turn.

        Raises:
            WorkspaceBusyError: DVC's lock is held (after DVC's own retries, about 3 s).
        """
        from dvc.lock import LockError
        from dvc.repo import lock_repo

        try:
            with lock_repo(self.repo):
                yield self
        except LockError:
            holder = _lock_holder(Path(self.repo.tmp_dir) / "lock")
            raise WorkspaceBusyError(
                f"{self.workspace}: DVC's repository lock is held by {holder}: another run is in "
                "progress in this workspace; wait for it to finish, then run this again"
            ) from None

    def _target(self, name: str) -> str:
        """The stage as a DVC target that does not depend on the current directory (DVC reads
        a bare name against ``./dvc.yaml``, so a run started in a subfolder would find none)."""
        return f"{self.workspace / 'dvc.yaml'}:{name}"

    def _stage(self, name: str) -> Any:
        (stage,) = self.repo.stage.collect(self._target(name))
        return stage

    def is_stale(self, name: str) -> bool:
        """True if DVC would run the stage: its inputs changed or its outputs are not recorded."""
        return bool(self._stage(name).changed())

    def restore(self, name: str) -> bool:
        """Check out the stage's outputs from DVC's run cache if these inputs ran before.

        Returns:
            True if restored (then :meth:`commit` records it), False if the stage must run.
        """
        from dvc.stage.cache import RunCacheNotFoundError, RunCacheNotSupported

        try:
            self.repo.stage_cache.restore(self._stage(name))
        except (RunCacheNotFoundError, RunCacheNotSupported):
            return False
        return True

    def commit(self, name: str) -> None:
        """Record the finished stage in ``dvc.lock``, its outputs in the cache and run cache."""
        self.repo.commit(self._target(name), force=True)

    def close(self) -> None:
        self.repo.close()
