"""Ingest: decode and check every image of a source folder, write the accepted ones as RGB.

A source is a folder in Kaggle's flat layout (``cat.N.jpg``, ``dog.N.jpg``). Every candidate file
is fully decoded (not just its header); what cannot be used is rejected or skipped with a reason,
and the report lists every file by its path relative to the source.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

__all__ = [
    "LABELS",
    "DecodedImage",
    "FileResult",
    "IngestError",
    "IngestReport",
    "check_image",
    "ingest_folder",
    "label_of",
]

LABELS: tuple[str, ...] = ("cat", "dog")
_OS_DEBRIS = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_FLAT_NAME = re.compile(r"^(cat|dog)[._-]", re.IGNORECASE)

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """The source cannot give a usable data set (missing folder, class empty or too small)."""


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


def label_of(relative: Path) -> str | None:
    """Return the class named by a file name in Kaggle's flat layout, or None."""
    match = _FLAT_NAME.match(relative.name)
    return match.group(1).lower() if match else None


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
    if any(part.startswith(".") for part in relative.parts):
        return "hidden file"
    if name.lower() in _OS_DEBRIS:
        return "operating-system file"
    if relative.suffix.lower() not in _IMAGE_SUFFIXES:
        return f"not an image file name (suffix {relative.suffix or 'none'!r})"
    if label_of(relative) is None:
        return "no recognisable label (expected cat.* or dog.*)"
    return ""


def _output_name(relative: Path, image_format: str | None) -> str:
    stem = "__".join(relative.with_suffix("").parts)
    return f"{stem}.jpg" if image_format == "JPEG" else f"{stem}.png"


def _process(source: Path, relative: Path, out_dir: Path, max_pixels: int) -> FileResult:
    reason = _skip_reason(relative)
    if reason:
        return FileResult(path=relative.as_posix(), status="skipped", reason=reason)
    data = (source / relative).read_bytes()
    decoded = check_image(data, max_pixels=max_pixels)
    if isinstance(decoded, str):
        return FileResult(path=relative.as_posix(), status="rejected", reason=decoded)
    label = label_of(relative) or ""
    image = decoded.image
    # RGB JPEGs keep their exact bytes; anything else is stored losslessly as RGB PNG.
    out_name = _output_name(relative, "JPEG" if decoded.is_rgb_jpeg else None)
    out_path = out_dir / label / out_name
    if decoded.is_rgb_jpeg:
        payload = data
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        payload = buffer.getvalue()
    out_path.write_bytes(payload)
    return FileResult(
        path=relative.as_posix(),
        status="accepted",
        label=label,
        out=f"{label}/{out_name}",
        sha256=hashlib.sha256(payload).hexdigest(),
        width=image.width,
        height=image.height,
        mode=decoded.mode,
    )


def list_files(source: Path) -> list[Path]:
    """Return every file under ``source``, relative to it, sorted."""
    found = []
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in files:
            found.append(Path(root, name).relative_to(source))
    return sorted(found)


def ingest_folder(
    source: Path,
    out_dir: Path,
    *,
    max_pixels: int,
    min_per_class: int,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Check every file of ``source`` and write the accepted images to ``out_dir/<label>/``.

    Args:
        source: Folder in Kaggle's flat layout.
        out_dir: Empty folder to write into (the caller makes it atomic).
        max_pixels: Pixel limit above which an image is rejected as a bomb.
        min_per_class: Fewer accepted images in a class fail the ingest.
        workers: Decoding threads (0: one per core).
        progress: Called as ``progress(done, total)`` while files are checked.

    Returns:
        The report of every file.

    Raises:
        IngestError: If the source is missing or a class ends up below ``min_per_class``.
    """
    if not source.is_dir():
        raise IngestError(f"data.source: {source} is not a folder (or 'synthetic')")
    files = list_files(source)
    for label in LABELS:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    results: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_process, source, rel, out_dir, max_pixels) for rel in files]
        for done, future in enumerate(futures, start=1):
            results.append(future.result())
            if progress is not None:
                progress(done, len(files))
    report = IngestReport(source=str(source), files=tuple(results))
    per_class = report.counts["per_class"]
    short = {label: n for label, n in per_class.items() if n < min_per_class}
    if short:
        details = ", ".join(f"{label}: {n}" for label, n in short.items())
        raise IngestError(
            f"{source}: too few usable images ({details}; ingest.min_per_class={min_per_class}). "
            "Check data.source points at a folder of cat.N.jpg / dog.N.jpg files."
        )
    return report


def clear_folder(folder: Path) -> None:
    """Remove a folder's content (used before re-generating the synthetic source)."""
    if folder.exists():
        shutil.rmtree(folder)
