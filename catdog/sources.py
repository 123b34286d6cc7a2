"""Sources: turn whatever cats/dogs download a user brings into a folder of labelled candidates.

Recognised shapes, each as a folder or as a ``.zip``:

* Kaggle "Dogs vs. Cats": flat ``train/cat.N.jpg`` and ``train/dog.N.jpg``. The competition
  archive is an outer zip holding ``train.zip`` and ``test1.zip``; zips found inside a zip are
  extracted too.
* Microsoft's PetImages: ``PetImages/Cat/0.jpg`` and ``PetImages/Dog/0.jpg`` (with zero-byte and
  truncated JPEGs and ``Thumbs.db``, which the ingest rejects or skips with a reason).
* A user's own photos in class folders (``cats/``, ``dogs/``, ``cat/``, ``dog/``, any case),
  possibly one or more levels below a top folder (``photos/cats/...``).

A zip is never trusted. Its members are streamed one by one into a work folder; members with
unsafe names (absolute, ``..``), links, special files, encrypted members, duplicates and members
over the size limits are not written and are reported as :class:`SourceIssue`. A corrupt archive
raises :class:`SourceError`, and a failed extraction leaves the work folder empty.

A zip found inside the source zip (say ``train.zip``) is extracted into a folder of the same
name, which replaces the archive: the candidate ``train.zip/train/cat.0.jpg`` under the work
folder is the member ``train/cat.0.jpg`` of ``train.zip``, and the report shows it as
``<source zip name>/train.zip/train/cat.0.jpg``, the same spelling as the issues.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from catdog.errors import SourceError
from catdog.vocabulary import IMAGE_SUFFIXES, OS_DEBRIS, OS_DEBRIS_FOLDERS

__all__ = [
    "LAYOUTS",
    "PreparedSource",
    "SourceError",
    "SourceIssue",
    "detect_layout",
    "label_files",
    "label_for",
    "output_stems",
    "prepare_source",
    "resolve_source",
]

#: ``data.source`` for the embedded generator of cartoon cats and dogs.
SYNTHETIC_SOURCE = "catdog/synthetic.py"
LAYOUTS: tuple[str, ...] = ("flat", "class_folders", "nested_class_folders", "mixed", "unlabelled")

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_MAX_MEMBER_BYTES = 512 * MiB
DEFAULT_MAX_TOTAL_BYTES = 20 * GiB
DEFAULT_MAX_DEPTH = 3
DEFAULT_MAX_MEMBERS = 1_000_000

_FLAT_NAME = re.compile(r"^(cat|dog)[._-]", re.IGNORECASE)
_CLASS_FOLDERS = {"cat": "cat", "cats": "cat", "dog": "dog", "dogs": "dog"}
_ZIP_SUFFIXES = frozenset({".zip"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAGS = 0x1 | 0x40  # traditional PKWARE encryption, strong encryption
_NAME_MAX_BYTES = 255
_COPY_CHUNK = 1024 * 1024
_WHAT_TO_GIVE = (
    "give a folder of cat.N.jpg/dog.N.jpg, class folders cats/ dogs/, or a zip of either"
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceIssue:
    """Something of the source that is not an image candidate.

    Attributes:
        path: Posix path relative to the source; zip members are spelled through their
            archives, e.g. ``outer.zip/train.zip/train/cat.1.jpg`` (the member name as stored).
        status: ``"rejected"`` (unsafe or broken, not written) or ``"skipped"``.
        reason: Why, in words.
    """

    path: str
    status: str
    reason: str


@dataclass(frozen=True)
class PreparedSource:
    """A source made ready for the ingest.

    Attributes:
        root: Folder holding the candidate files: the source folder itself, or the work folder
            a zip was extracted into.
        layout: What :func:`detect_layout` found (one of :data:`LAYOUTS`).
        issues: Zip members that were not extracted, with reasons.
        prefix: What to put before a path relative to ``root`` to name it in a report
            (``""`` for a folder, ``"<zip name>/"`` for a zip); see :meth:`report_path`.
    """

    root: Path
    layout: str
    issues: tuple[SourceIssue, ...]
    prefix: str = ""

    def report_path(self, relative: Path) -> str:
        """Name a candidate (relative to ``root``) the way issues name zip members."""
        return f"{self.prefix}{relative.as_posix()}"


class _MemberTooLarge(Exception):
    """A member yielded more bytes than its header declared."""


class _BoundedReader:
    """File-like wrapper that refuses to give more than ``limit`` bytes."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        # Ask for one byte more than allowed so an overrun is seen, never copied.
        allowed = self._limit - self.count + 1
        data = self._raw.read(allowed if size < 0 else min(size, allowed))
        self.count += len(data)
        if self.count > self._limit:
            raise _MemberTooLarge
        return data


@dataclass
class _Budget:
    max_member_bytes: int
    max_total_bytes: int
    max_members: int
    written: int = 0
    members: int = 0


def _not_a_source(source: Path) -> SourceError:
    return SourceError(f"data.source: {source} is not a folder or a .zip; {_WHAT_TO_GIVE}")


def resolve_source(data_source: str, root: Path) -> Path | None:
    """The folder or zip ``data.source`` names (relative to ``root``), None for the generator.

    Raises:
        SourceError: It names nothing that exists, or neither a folder nor a ``.zip``.
    """
    source = (root / data_source).resolve()
    if source == (root / SYNTHETIC_SOURCE).resolve():
        return None
    if not source.exists():
        raise SourceError(f"data.source: {data_source} does not exist; {_WHAT_TO_GIVE}")
    if not (source.is_dir() or source.suffix.lower() == ".zip"):
        raise _not_a_source(source)
    if source.is_dir():
        _check_links(source)
    return source


def _check_links(folder: Path) -> None:
    """Fail naming the first symbolic link under ``folder`` that leads nowhere or into a loop:
    DVC hashes every file of the source, following links, and would stop on it mid-run."""
    for parent, dirs, names in os.walk(folder):
        for name in (*dirs, *names):
            path = Path(parent, name)
            if path.is_symlink():
                try:
                    path.stat()
                except OSError as error:
                    raise SourceError(
                        f"data.source: {path} is a symbolic link that cannot be followed "
                        f"({error.strerror}); remove it or point it at a file"
                    ) from None


def prepare_source(
    source: Path,
    work_dir: Path,
    *,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> PreparedSource:
    """Make a source ready for the ingest: a folder is used as is, a zip is extracted safely.

    Zip members are streamed one at a time (never ``extractall``); zips found inside are
    extracted in turn, each into a folder named like the archive, which replaces it.

    Args:
        source: A folder, or a ``.zip`` file.
        work_dir: Empty folder to extract a zip into (created if missing; unused for a folder).
            Nothing is ever written outside it.
        max_member_bytes: A member declaring more uncompressed bytes is rejected. Zips inside
            the zip are bounded by ``max_total_bytes`` instead (Kaggle's ``train.zip`` is larger
            than 512 MiB); their members by this limit again.
        max_total_bytes: A member that would take the bytes written past this is rejected.
        max_depth: Zips nested deeper than this (the source zip is depth 0, a zip inside it
            depth 1, ...) are rejected.
        max_members: More archive entries than this in all (an inode-exhaustion bomb) fail.

    Returns:
        Where the candidates are, the detected layout and the members that were not extracted.

    Raises:
        SourceError: If the source is missing, is neither a folder nor a ``.zip``, or an archive
            is corrupt or unreadable; ``work_dir`` is then left empty. Also if ``work_dir`` is
            not empty.
    """
    source = Path(source)
    if not source.exists():
        raise SourceError(f"data.source: {source} does not exist; {_WHAT_TO_GIVE}")
    if source.is_dir():
        files = label_files(source)
        return PreparedSource(root=source, layout=detect_layout(files), issues=())
    if not (source.is_file() and source.suffix.lower() == ".zip"):
        raise _not_a_source(source)

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if any(work_dir.iterdir()):
        raise SourceError(
            f"{work_dir}: the folder to extract {source} into must be empty; remove its content"
        )
    budget = _Budget(max_member_bytes, max_total_bytes, max_members)
    issues: list[SourceIssue] = []
    try:
        nested = _extract_archive(source, work_dir, source.name, str(source), budget, issues)
        _extract_nested(source, work_dir, nested, budget, issues, max_depth)
    except BaseException:
        _empty_folder(work_dir)
        raise
    files = label_files(work_dir)
    return PreparedSource(
        root=work_dir, layout=detect_layout(files), issues=tuple(issues), prefix=f"{source.name}/"
    )


def _extract_nested(
    source: Path,
    work_dir: Path,
    nested: list[Path],
    budget: _Budget,
    issues: list[SourceIssue],
    max_depth: int,
) -> None:
    """Extract the zips found in the source zip, breadth first, each into a same-named folder."""
    queue = [(relative, 1) for relative in nested]
    while queue:
        relative, depth = queue.pop(0)
        archive = work_dir / relative
        display = f"{source.name}/{relative.as_posix()}"
        if depth > max_depth:
            archive.unlink()
            issues.append(
                SourceIssue(display, "rejected", f"zip nested deeper than {max_depth} levels")
            )
            continue
        handle, staged_name = tempfile.mkstemp(dir=work_dir, prefix=".nested-", suffix=".zip")
        os.close(handle)
        staged = Path(staged_name)
        try:
            os.replace(archive, staged)
            archive.mkdir()
            log.info("extracting %s", display)
            where = f"{source}/{relative.as_posix()}"
            found = _extract_archive(staged, archive, display, where, budget, issues)
        finally:
            staged.unlink(missing_ok=True)
        queue.extend((relative / inner, depth + 1) for inner in found)


def _extract_archive(
    archive: Path,
    dest: Path,
    display: str,
    where: str,
    budget: _Budget,
    issues: list[SourceIssue],
) -> list[Path]:
    """Stream the members of one zip into ``dest``; return the zips written, relative to it.

    Args:
        archive: The zip file to read.
        dest: Folder to write its members into.
        display: How issues name the archive (``outer.zip/train.zip``).
        where: How errors name it (the full path of the source, then the inner archives).
        budget: Limits, and what was written so far.
        issues: Where rejected members are appended.

    Raises:
        SourceError: If the archive is corrupt, unreadable or cannot be written out.
    """
    nested: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            budget.members += len(infos)
            if budget.members > budget.max_members:
                raise SourceError(
                    f"data.source: {where} holds more than {budget.max_members} archive "
                    "entries; refusing it as a possible zip bomb"
                )
            seen: dict[tuple[str, ...], bool] = {}  # normalised path -> is a directory
            for info in infos:
                member = f"{display}/{info.filename}"
                outcome = _extract_member(zf, info, dest, budget, seen)
                if isinstance(outcome, str):
                    issues.append(SourceIssue(member, "rejected", outcome))
                elif outcome is not None and _is_nested_zip(outcome):
                    nested.append(outcome)
    except SourceError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise SourceError(
            f"data.source: {where} is a corrupt or unreadable zip ({error}); "
            "download it again or unpack it with another tool and give the folder"
        ) from error
    except OSError as error:
        raise SourceError(f"data.source: cannot extract {where}: {error}") from error
    return nested


def _is_nested_zip(relative: Path) -> bool:
    """Whether an extracted file is a zip to extract in turn (not hidden, not macOS debris)."""
    return relative.suffix.lower() == ".zip" and _is_candidate(relative, _ZIP_SUFFIXES)


def _member_parts(name: str) -> tuple[str, ...] | str:
    """Normalised path components of a member name, or why the name is unsafe."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        return "absolute path"
    parts = tuple(part for part in posix.split("/") if part not in ("", "."))
    if ".." in parts:
        return "path with a '..' component (would escape the extraction folder)"
    if any(len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX_BYTES for part in parts):
        return f"a path component is longer than {_NAME_MAX_BYTES} bytes"
    return parts


def _name_clash(
    parts: tuple[str, ...], is_dir: bool, seen: dict[tuple[str, ...], bool]
) -> str | None:
    """Why a member's path clashes with the members before it; "" for a folder listed again
    (or implied by an earlier member), None when there is no clash."""
    # Every parent folder of a member is implied; a file cannot stand where a folder is needed.
    for depth in range(1, len(parts)):
        if seen.get(parts[:depth]) is False:
            return f"conflicts with the file {'/'.join(parts[:depth])} of the archive"
    known = seen.get(parts)  # True: a folder, False: a file, None: not seen yet
    if known is None:
        return None
    if is_dir and known:
        return ""
    if is_dir != known:
        return f"conflicts with a {'folder' if known else 'file'} of the same name"
    return "duplicate member name (an earlier member has the same path)"


def _refused_file(info: zipfile.ZipInfo, parts: tuple[str, ...], budget: _Budget) -> str:
    """Why a file member is not extracted ("" if it may be): encrypted, or over a size limit."""
    if info.flag_bits & _ENCRYPTED_FLAGS:
        return "encrypted (password-protected) member"
    # A zip to extract in turn is bounded by the total only; its members by both limits.
    if not _is_nested_zip(Path(*parts)) and info.file_size > budget.max_member_bytes:
        return (
            f"declared size {info.file_size} bytes exceeds max_member_bytes="
            f"{budget.max_member_bytes} (possible zip bomb)"
        )
    if budget.written + info.file_size > budget.max_total_bytes:
        return (
            f"declared size {info.file_size} bytes would take the extraction past "
            f"max_total_bytes={budget.max_total_bytes} (possible zip bomb)"
        )
    return ""


def _extract_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    dest: Path,
    budget: _Budget,
    seen: dict[tuple[str, ...], bool],
) -> Path | str | None:
    """Write one member under ``dest``.

    Returns:
        The written file relative to ``dest``, None for a directory entry, or the reason the
        member was rejected (nothing was written for it).
    """
    parts = _member_parts(info.filename)
    if isinstance(parts, str):
        return parts
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    is_dir = info.is_dir() or stat.S_ISDIR(mode)
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file (device, pipe or socket)"
    if not parts:
        return None if is_dir else "empty member name"
    target = dest.joinpath(*parts)
    if not _is_within(target, dest):
        return "path resolves outside the extraction folder"
    clash = _name_clash(parts, is_dir, seen)
    if clash is not None:
        return clash or None  # "": a folder seen before, nothing to do
    if is_dir:
        _mark_folders(seen, parts, inclusive=True)
        target.mkdir(parents=True, exist_ok=True)
        return None
    refusal = _refused_file(info, parts, budget)
    if refusal:
        return refusal
    try:
        raw = zf.open(info)
    except (NotImplementedError, RuntimeError) as error:
        return f"cannot be read: {error}"
    _mark_folders(seen, parts, inclusive=False)
    seen[parts] = False
    target.parent.mkdir(parents=True, exist_ok=True)
    reader = _BoundedReader(raw, info.file_size)
    try:
        with raw, open(target, "xb") as out:
            shutil.copyfileobj(reader, out, _COPY_CHUNK)
    except _MemberTooLarge:
        target.unlink(missing_ok=True)
        return (
            f"holds more than its declared size of {info.file_size} bytes "
            "(lying header, possible zip bomb); stopped copying"
        )
    finally:
        budget.written += reader.count
    return target.relative_to(dest)


def _mark_folders(
    seen: dict[tuple[str, ...], bool], parts: tuple[str, ...], inclusive: bool
) -> None:
    for depth in range(1, len(parts) + (1 if inclusive else 0)):
        seen[parts[:depth]] = True


def _is_within(path: Path, folder: Path) -> bool:
    real_folder = os.path.realpath(folder)
    real_path = os.path.realpath(path)
    return os.path.commonpath([real_folder, real_path]) == real_folder and real_path != real_folder


def _empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (which holds nothing but what was extracted)."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def label_for(relative: Path) -> str | None:
    """Return the class of a file from its path relative to the source, or None.

    The file name decides in Kaggle's flat layout (``cat.N.jpg``, ``Dog_N.jpeg``, any case);
    otherwise the nearest parent folder named ``cat``, ``cats``, ``dog`` or ``dogs`` (any
    case). When both are present and disagree (``dogs/cat.3.jpg``) the file is ambiguous: None.

    Args:
        relative: Path of the file relative to the source root.

    Returns:
        ``"cat"``, ``"dog"`` or None.
    """
    match = _FLAT_NAME.match(relative.name)
    by_name = match.group(1).lower() if match else None
    by_folder = _folder_label(relative)
    if by_name and by_folder and by_name != by_folder[0]:
        return None
    return by_name or (by_folder[0] if by_folder else None)


def _folder_label(relative: Path) -> tuple[str, int] | None:
    """The label of the nearest class folder among the parents, and that folder's depth."""
    folders = relative.parts[:-1]
    for depth in range(len(folders) - 1, -1, -1):
        label = _CLASS_FOLDERS.get(folders[depth].lower())
        if label:
            return label, depth
    return None


def label_files(root: Path) -> list[tuple[Path, str | None]]:
    """List every file under ``root`` with its label.

    Hidden files and folders and operating-system debris (``Thumbs.db``, ``__MACOSX/``) are
    listed too, so that the ingest reports them as skipped. Symbolic links to folders are not
    followed.

    Args:
        root: The folder of candidates (``PreparedSource.root``).

    Returns:
        ``(path relative to root, label or None)`` for every file, sorted by path.
    """
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        found.extend(Path(folder, name).relative_to(root) for name in names)
    return [(relative, label_for(relative)) for relative in sorted(found)]


def _is_candidate(relative: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> bool:
    """Whether a file may hold data: not hidden, not OS debris, with one of ``suffixes``."""
    parts = [part.lower() for part in relative.parts]
    return (
        not any(part.startswith(".") for part in parts)
        and not any(part in OS_DEBRIS_FOLDERS for part in parts[:-1])
        and parts[-1] not in OS_DEBRIS
        and relative.suffix.lower() in suffixes
    )


def detect_layout(files: list[tuple[Path, str | None]]) -> str:
    """Describe how the labelled images of a source are laid out.

    Only labelled image files count (hidden files, OS debris and unlabelled files do not).

    Args:
        files: What :func:`label_files` returned.

    Returns:
        ``"flat"`` (labels from file names, ``cat.N.jpg``, in one or more folders),
        ``"class_folders"`` (``cats/``, ``dogs/`` at the top), ``"nested_class_folders"``
        (class folders below a top folder, like ``PetImages/Cat``), ``"mixed"`` (more than one
        of these) or ``"unlabelled"`` (no labelled image at all).
    """
    kinds: Counter[str] = Counter()
    for relative, label in files:
        if label is None or not _is_candidate(relative):
            continue
        by_folder = _folder_label(relative)
        if by_folder is None:
            kinds["flat"] += 1
        elif by_folder[1] == 0:
            kinds["class_folders"] += 1
        else:
            kinds["nested_class_folders"] += 1
    if not kinds:
        return "unlabelled"
    if len(kinds) > 1:
        return "mixed"
    return next(iter(kinds))


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def output_stems(paths: Iterable[Path]) -> dict[Path, str]:
    """Give each candidate a distinct, file-system-safe output stem (no suffix).

    The folders shared by all paths are dropped and the rest joined with ``__``:
    ``cat.3.jpg`` -> ``cat.3``; ``PetImages/Cat/0.jpg`` -> ``Cat__0`` (when all share
    ``PetImages``); ``train.zip/train/cat.0.jpg`` -> ``cat.0``. Characters outside
    ``A-Za-z0-9._-`` become ``_``. Stems that would clash (``x.jpg`` and ``x.png``, ``a__b/c`` and
    ``a/b__c``, or after replacing characters) or run too long get ``-`` and 10 hex digits of the
    full path's SHA-256, so the result does not depend on the order of ``paths``.

    Args:
        paths: Candidate paths relative to the source root (the ones to be written).

    Returns:
        The stem of each path.
    """
    paths = list(dict.fromkeys(paths))
    if not paths:
        return {}
    common = os.path.commonpath([PurePosixPath(p.parent.as_posix()) for p in paths])
    drop = 0 if common in ("", ".") else len(PurePosixPath(common).parts)

    def tag(path: Path) -> str:
        return hashlib.sha256(path.as_posix().encode("utf-8", "surrogateescape")).hexdigest()[:10]

    stems: dict[Path, str] = {}
    for path in paths:
        parts = [*path.parts[drop:-1], path.stem]
        stem = "__".join(_UNSAFE_CHARS.sub("_", part) for part in parts)
        if len(stem) > _MAX_STEM:
            stem = f"{stem[:_MAX_STEM]}-{tag(path)}"
        stems[path] = stem
    clashes = Counter(s.lower() for s in stems.values())
    return {
        path: f"{stem}-{tag(path)}" if clashes[stem.lower()] > 1 else stem
        for path, stem in stems.items()
    }
