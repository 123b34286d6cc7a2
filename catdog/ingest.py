"""Ingest: decode and check every image of a source, write the accepted ones as RGB.

A source is a folder or a zip in any common cats/dogs layout (see :mod:`catdog.sources`). Every
candidate file is fully decoded (not just its header), in parallel; what cannot be used is
rejected or skipped with a reason, and the report lists every file by its path relative to the
source (zip members as ``archive.zip/member``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, UnidentifiedImageError

from catdog.errors import IngestError
from catdog.sources import PreparedSource, label_files, label_for, output_stems
from catdog.vocabulary import (
    FAILED_INGEST_SUMMARY,
    IMAGE_SUFFIXES,
    LABELS,
    OS_DEBRIS,
    OS_DEBRIS_FOLDERS,
)

__all__ = [
    "DecodedImage",
    "FileResult",
    "IngestError",
    "IngestReport",
    "check_image",
    "ingest_folder",
    "ingest_source",
    "issues_markdown",
]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    """What happened to one file of the source."""

    path: str
    status: str  # accepted | rejected | skipped
    reason: str = ""
    label: str = ""
    out: str = ""
    sha256: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""


@dataclass(frozen=True)
class IngestReport:
    """Every file of the source with its fate, and counts per class."""

    source: str
    files: tuple[FileResult, ...]

    def by_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def counts(self) -> dict[str, Any]:
        per_label = Counter(f.label for f in self.by_status("accepted"))
        return {
            "accepted": len(self.by_status("accepted")),
            "rejected": len(self.by_status("rejected")),
            "skipped": len(self.by_status("skipped")),
            "per_class": {label: per_label.get(label, 0) for label in LABELS},
        }

    def to_json(self) -> dict[str, Any]:
        def rows(status: str, keys: Iterable[str]) -> list[dict[str, Any]]:
            return [{k: asdict(f)[k] for k in keys} for f in self.by_status(status)]

        return {
            "source": self.source,
            "counts": self.counts,
            "accepted": rows("accepted", ("path", "label", "out", "sha256", "width", "height")),
            "rejected": rows("rejected", ("path", "reason")),
            "skipped": rows("skipped", ("path", "reason")),
        }


@dataclass(frozen=True)
class DecodedImage:
    """A fully decoded image, converted to RGB, and what it was before."""

    image: Image.Image
    format: str | None
    mode: str

    @property
    def is_rgb_jpeg(self) -> bool:
        return self.format == "JPEG" and self.mode == "RGB"


def check_image(data: bytes, *, max_pixels: int) -> DecodedImage | str:
    """Fully decode image bytes.

    Args:
        data: The file's bytes.
        max_pixels: Images with more pixels are rejected (decompression bombs).

    Returns:
        The decoded image (converted to RGB), or the reason it cannot be used.
    """
    if not data:
        return "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    return (
                        f"too many pixels ({width}x{height} > ingest.max_pixels={max_pixels}): "
                        "possible decompression bomb"
                    )
                probe.load()
                image = probe.convert("RGB") if probe.mode != "RGB" else probe.copy()
                decoded = DecodedImage(image=image, format=probe.format, mode=probe.mode)
    except UnidentifiedImageError:
        return "not an image (unrecognised content)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"decompression bomb: {error}"
    except (OSError, SyntaxError, ValueError) as error:
        return f"cannot decode: {error}"
    return decoded


def _skip_reason(relative: Path) -> str:
    name = relative.name
    if any(part.lower() in OS_DEBRIS_FOLDERS for part in relative.parts[:-1]):
        return "operating-system file"
    if any(part.startswith(".") for part in relative.parts):
        return "hidden file"
    if name.lower() in OS_DEBRIS:
        return "operating-system file"
    if relative.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file name (suffix {relative.suffix or 'none'!r})"
    if label_for(relative) is None:
        return (
            "no recognisable label (expected cat.N / dog.N names or cat(s)/ dog(s)/ folders; "
            "name and folder may not disagree)"
        )
    return ""


def _process(
    root: Path,
    relative: Path,
    report_path: str,
    stem: str,
    out_dir: Path,
    max_pixels: int,
) -> FileResult:
    reason = _skip_reason(relative)
    if reason:
        return FileResult(path=report_path, status="skipped", reason=reason)
    data = (root / relative).read_bytes()
    decoded = check_image(data, max_pixels=max_pixels)
    if isinstance(decoded, str):
        return FileResult(path=report_path, status="rejected", reason=decoded)
    label = label_for(relative) or ""
    image = decoded.image
    # RGB JPEGs keep their exact bytes; anything else is stored losslessly as RGB PNG.
    out_name = f"{stem}.jpg" if decoded.is_rgb_jpeg else f"{stem}.png"
    if decoded.is_rgb_jpeg:
        payload = data
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        payload = buffer.getvalue()
    (out_dir / label / out_name).write_bytes(payload)
    return FileResult(
        path=report_path,
        status="accepted",
        label=label,
        out=f"{label}/{out_name}",
        sha256=hashlib.sha256(payload).hexdigest(),
        width=image.width,
        height=image.height,
        mode=decoded.mode,
    )


def ingest_source(
    prepared: PreparedSource,
    out_dir: Path,
    *,
    max_pixels: int,
    min_per_class: int,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Check every file of a prepared source and write the accepted images to ``out_dir/<label>/``.

    Args:
        prepared: The source, as :func:`catdog.sources.prepare_source` made it ready.
        out_dir: Empty folder to write into (the caller makes it atomic).
        max_pixels: Pixel limit above which an image is rejected as a bomb.
        min_per_class: Fewer accepted images in a class fail the ingest.
        workers: Decoding threads (0: one per core); decoding releases the GIL.
        progress: Called as ``progress(done, total)`` while files are checked.

    Returns:
        The report of every file, the source's own issues (unsafe zip members...) included.

    Raises:
        IngestError: If a class ends up below ``min_per_class``.
    """
    files = [relative for relative, _ in label_files(prepared.root)]
    stems = output_stems([rel for rel in files if not _skip_reason(rel)])
    for label in LABELS:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    results: list[FileResult] = [
        FileResult(path=issue.path, status=issue.status, reason=issue.reason)
        for issue in prepared.issues
    ]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                _process,
                prepared.root,
                rel,
                prepared.report_path(rel),
                stems.get(rel, ""),
                out_dir,
                max_pixels,
            )
            for rel in files
        ]
        for done, future in enumerate(futures, start=1):
            results.append(future.result())
            if progress is not None:
                progress(done, len(files))
    report = IngestReport(source=str(prepared.root), files=tuple(results))
    per_class = report.counts["per_class"]
    short = {label: n for label, n in per_class.items() if n < min_per_class}
    if short:
        details = ", ".join(f"{label}: {n}" for label, n in short.items())
        raise IngestError(
            f"too few usable images ({details}; ingest.min_per_class={min_per_class}; layout "
            f"{prepared.layout}): {FAILED_INGEST_SUMMARY} lists what was rejected and why; point "
            "data.source at a folder or zip of cat.N.jpg / dog.N.jpg files or of cats/ and "
            "dogs/ folders",
            report,
        )
    return report


def ingest_folder(source: Path, out_dir: Path, **options: Any) -> IngestReport:
    """:func:`ingest_source` on a plain folder (no extraction needed)."""
    from catdog.sources import prepare_source

    if not source.is_dir():
        raise IngestError(f"data.source: {source} is not a folder")
    return ingest_source(prepare_source(source, source), out_dir, **options)


def issues_markdown(report: Mapping[str, Any]) -> str:
    """The ingest report for people: counts, then each rejected or skipped file and why."""
    counts = report["counts"]
    per_class = ", ".join(f"{k} {v}" for k, v in counts["per_class"].items())
    lines = [
        f"# Ingest of {report['source']} (layout: {report.get('layout', 'n/a')})",
        "",
        f"accepted {counts['accepted']} ({per_class}), rejected {counts['rejected']}, "
        f"skipped {counts['skipped']}",
        "",
    ]
    rows = [
        {"status": status, "path": row["path"], "reason": row["reason"]}
        for status in ("rejected", "skipped")
        for row in report[status]
    ]
    if rows:
        frame = pd.DataFrame(rows).set_index("status")
        lines.append(frame.to_markdown() + "\n")
    return "\n".join(lines) + "\n"
