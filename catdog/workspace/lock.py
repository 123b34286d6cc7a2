"""One pipeline run per workspace at a time.

``catdog run``, a ``catdog stage`` started by hand, and ``dvc repro`` / ``dvc exp run`` (through
the ``catdog stage`` processes DVC starts) each claim the workspace in ``.catdog/run.json``: the
process that owns the run (the DVC process for DVC's stages), its start time and command. A second
run is refused at once, naming the first one. The claim is held as long as its owner lives, so a
run that was killed leaves nothing to clean up: the next one finds a dead owner and takes over.
``catdog run`` also holds DVC's own repository lock, so DVC refuses ``dvc repro`` meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from catdog.errors import CatdogError
from catdog.io import write_json
from catdog.workspace.paths import state_dir

__all__ = ["Owner", "WorkspaceBusyError", "dvc_ancestor", "hold_workspace", "run_owner"]

RECORD = "run.json"
_GUARD = "run.lock"


class WorkspaceBusyError(CatdogError):
    """Another pipeline run holds the workspace."""


@dataclass(frozen=True)
class Owner:
    """The process a run belongs to."""

    pid: int
    created: float  # psutil's create_time: with the pid, names one process for good
    command: str

    def alive(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            return abs(process.create_time() - self.created) < 1 and process.is_running()
        except psutil.Error:
            return False


def _command_line(process: psutil.Process) -> str:
    words = process.cmdline()
    if words and Path(words[0]).name.startswith("python") and words[1:2] == ["-m"]:
        words = words[2:]  # `python -m catdog.cli stage x` reads as `catdog.cli stage x`
    elif words and Path(words[0]).name.startswith("python"):
        words = words[1:]
    return " ".join(Path(words[0]).name if i == 0 else w for i, w in enumerate(words))


def dvc_ancestor() -> Owner | None:
    """The ``dvc repro`` / ``dvc exp run`` process this process descends from, if any."""
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process().parents():
            words = process.cmdline()
            names = [Path(w).name for w in words[:2]]
            if "dvc" in names or " -m dvc" in " ".join(words):
                return Owner(process.pid, process.create_time(), _command_line(process))
    return None


def run_owner(command: str) -> Owner:
    """Who owns a run started here: the DVC process above us, else this process."""
    me = psutil.Process()
    return dvc_ancestor() or Owner(me.pid, me.create_time(), command)


@contextlib.contextmanager
def _guarded(folder: Path) -> Iterator[None]:
    """Serialise claims: an exclusive flock, released by the kernel if the process dies."""
    fd = os.open(folder / _GUARD, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: Path) -> Owner | None:
    try:
        data = json.loads(path.read_text())
        return Owner(int(data["pid"]), float(data["created"]), str(data["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refusal(holder: Owner, record: Path) -> str:
    started = time.strftime("%H:%M:%S", time.localtime(holder.created))
    return (
        f"{record.parent.parent}: another pipeline run is in progress in this workspace: "
        f"`{holder.command}` (pid {holder.pid}, started {started}); wait for it to finish or "
        f"stop it (kill {holder.pid}), then run this again"
    )


@contextlib.contextmanager
def hold_workspace(workspace: Path, command: str) -> Iterator[Owner]:
    """Claim ``workspace`` for the run of ``command`` while the block runs.

    Under DVC the claim belongs to the DVC process, so the stages of one ``dvc repro`` pass it
    on to each other and it lapses when DVC exits; a process that already holds it (a flow
    called by ``catdog run``) holds it again.

    Raises:
        WorkspaceBusyError: A live run of another owner holds the workspace; the message names
            its command and process id.
    """
    owner = run_owner(command)
    record = state_dir(workspace) / RECORD
    with _guarded(record.parent):
        holder = _read(record)
        if (
            holder is not None
            and holder.alive()
            and (holder.pid, holder.created)
            != (
                owner.pid,
                owner.created,
            )
        ):
            raise WorkspaceBusyError(_refusal(holder, record))
        ours = holder is None or (holder.pid, holder.created) != (owner.pid, owner.created)
        if ours:
            write_json(record, asdict(owner))
    try:
        yield owner
    finally:
        if ours and owner.pid == os.getpid():  # DVC's claim lapses when DVC exits
            with _guarded(record.parent):
                if _read(record) == owner:
                    record.unlink(missing_ok=True)
