"""Failures a user can cause and fix. Each message names the file, key or reference at fault and
says what to do; the command line prints it as one ``catdog: error:`` line (exit code 2), with no
traceback unless ``CATDOG_DEBUG=1``."""

from __future__ import annotations

__all__ = [
    "CatdogError",
    "IngestError",
    "ModelReferenceError",
    "ParamsError",
    "SourceError",
    "SplitError",
    "StorageError",
    "WeightsUnavailableError",
    "error_chain",
]


def error_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


class CatdogError(Exception):
    """A failure the user can fix; the message says what is wrong and what to do."""


class ParamsError(CatdogError, ValueError):
    """A params file or an override is invalid; the message names the key."""


class SourceError(CatdogError, ValueError):
    """The source cannot be used (missing, not a folder or a zip, corrupt archive)."""


class IngestError(CatdogError, RuntimeError):
    """The source cannot give a usable data set (missing folder, class empty or too small).

    ``report`` is the ingest's report of every file when the files were checked, so the stage can
    still write it: it says what was rejected and why.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class SplitError(CatdogError, ValueError):
    """The images cannot be split as asked (too few, all duplicates, a split left empty)."""


class ModelReferenceError(CatdogError, ValueError):
    """A model reference (file, ``runs:/``, ``models:/``) names no usable model."""


class WeightsUnavailableError(CatdogError, RuntimeError):
    """An explicit weights request (``imagenet`` or a path) cannot be met."""


class StorageError(CatdogError, OSError):
    """The disk refused the work: full, read-only, no permission, a link loop."""
