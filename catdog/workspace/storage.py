"""Filesystem faults the user must fix: a full disk, a read-only file system, a permission, a
link loop. Waiting does not fix them, so they are not retried; the command names the file and
what to do in one line.

They reach us as ``OSError`` (its ``errno``, from Python, h5py or TensorFlow) or as SQLite's
own words when MLflow's store is the file that could not be written.
"""

from __future__ import annotations

import errno
import os
import re

from catdog.errors import error_chain

__all__ = ["FAULT_ERRNOS", "fault_errno", "storage_fault_message"]

_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space, then run the same "
    "command again (nothing half-written was kept)",
    errno.EDQUOT: "the disk quota is used up; free some space, then run the same command "
    "again (nothing half-written was kept)",
    errno.EROFS: "the file system is read-only; catdog writes its outputs, dvc.lock and its "
    "stores in the workspace: run it from a writable clone",
    errno.EACCES: "permission denied; make the workspace writable by you (or work in your own "
    "clone) and run the same command again",
    errno.EPERM: "operation not permitted; make the workspace writable by you (or work in your "
    "own clone) and run the same command again",
    errno.ELOOP: "a loop of symbolic links; replace the link with the file or folder it should "
    "name and run the same command again",
}
FAULT_ERRNOS = frozenset(_ADVICE)
_SQLITE = {  # what SQLite says (through SQLAlchemy) instead of an errno
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
}
_H5_FILENAME = re.compile(r"filename = '([^']+)'")  # h5py names the file only in its message


def _fault(error: BaseException) -> tuple[int, str] | None:
    """The first filesystem fault in ``error``'s chain: its errno and the file it names."""
    for link in error_chain(error):
        number = getattr(link, "errno", None)
        if isinstance(link, OSError) and number in _ADVICE:
            named = link.filename or next(iter(_H5_FILENAME.findall(str(link))), "")
            return number, str(named)
        for words, number in _SQLITE.items():
            if words in str(link):
                return number, _sqlite_store()
    return None


def _sqlite_store() -> str:
    """The SQLite file of MLflow's store, as its tracking URI names it."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri


def fault_errno(error: BaseException) -> int | None:
    """The errno of the filesystem fault in ``error``'s chain, if there is one."""
    fault = _fault(error)
    return fault[0] if fault else None


def _output_named(path: str) -> str:
    """The output a staging path belongs to (``data/.features.tmp-x/f`` -> ``data/features``):
    the staging copy is gone by the time the user reads the message."""
    return re.sub(r"/\.([^/]+?)\.tmp-[^/]+(/.*)?$", r"/\1", path)


def storage_fault_message(error: BaseException) -> str:
    """One line for a filesystem fault in ``error``'s chain ('' if there is none)."""
    fault = _fault(error)
    if fault is None:
        return ""
    number, path = fault
    return f"{_output_named(path) or os.getcwd()}: {_ADVICE[number]}"  # the workspace, unnamed
