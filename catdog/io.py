"""Atomic output writing: a killed stage never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_file", "remove_stale_staging", "write_json", "write_text"]


def _staging_name(target: Path) -> str:
    return f".{target.name}.tmp-"


def _default_mode(directory: bool) -> int:
    """What a plain open()/mkdir() would give under the current umask (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix: Keras insists on names ending in .keras or .weights.h5
    fd, tmp = tempfile.mkstemp(
        prefix=_staging_name(target), suffix="".join(target.suffixes), dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _default_mode(directory=False))
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder next to ``target``; it replaces ``target`` on success.

    An existing ``target`` is moved aside first and deleted only once the new folder is in place,
    so at every instant ``target`` is either the old complete folder, absent, or the new one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_staging_name(target), dir=target.parent))
    os.chmod(staging, _default_mode(directory=True))
    try:
        yield staging
        trash = None
        if target.exists() or target.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, trash / "old")
        os.replace(staging, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(folder: Path) -> None:
    """Delete staging leftovers (``.name.tmp-*``, ``.name.old-*``) of a killed earlier run."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name.startswith(".") and (".tmp-" in child.name or ".old-" in child.name):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> Path:
    """Write text atomically and return ``target``."""
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_json(target: Path, data: Any) -> Path:
    """Write JSON (sorted keys, indented, trailing newline) atomically and return ``target``."""
    return write_text(target, json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")
