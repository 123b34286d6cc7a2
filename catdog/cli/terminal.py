"""What the terminal shows of a run: Prefect's lines without tracebacks (unless debugging), and
none of TensorFlow's false retracing alarms or native start-up notices.

Prefect logs a failed task or flow with its traceback on the console, before catdog's one-line
``catdog: error:`` message. The flow run's logs in Prefect's UI keep the traceback; the terminal
shows Prefect's one-line summary of it and catdog's line, which says what to do.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

__all__ = ["drop_false_retracing_warnings", "hide_console_tracebacks", "quiet_tensorflow_import"]


class _WithoutTraceback(logging.Formatter):
    """Another formatter's output for a record, leaving out its exception and stack."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:  # the record goes on to other handlers (Prefect's API) as it came
            record.exc_info, record.exc_text, record.stack_info = saved


def _subclass_names(cls: type) -> set[str]:
    return {cls.__name__}.union(*(_subclass_names(sub) for sub in cls.__subclasses__()))


_FAILURE_RECORDS = (
    "Finished in state Failed(",
    "Encountered exception during execution",
    "Task run failed with exception",
    "Failed to write result",
)


class _NotARestatement(logging.Filter):
    """Drop the console records that restate a catdog error on its way out: the flow's own
    ``catdog: error:`` record, the task's "Finished in state Failed(...)" and each enclosing
    flow's "Encountered exception during execution", and those records for a full or read-only
    disk, which the command names the same way. The command ends with that error's one line;
    the flow runs' logs in Prefect's UI keep every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from catdog.errors import CatdogError
        from catdog.workspace.storage import FAULT_ERRNOS

        message = record.getMessage()
        if message.startswith("catdog: error: "):
            return False
        if not any(words in message for words in _FAILURE_RECORDS):
            return True
        names = _subclass_names(CatdogError)
        restated = any(f"{name}(" in message or f"{name}: " in message for name in names)
        return not restated and not any(os.strerror(n) in message for n in FAULT_ERRNOS)


def hide_console_tracebacks() -> None:
    """Leave tracebacks and restatements of catdog's errors out of Prefect's console output in
    this process."""
    import prefect.main  # noqa: F401  (sets up Prefect's logging, once: wrap what it made)
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(
            handler.formatter, _WithoutTraceback
        ):
            handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))
            handler.addFilter(_NotARestatement())


class _NotARetrace(logging.Filter):
    """Drop TensorFlow's "N out of the last M calls to <function> triggered tf.function retracing".

    TensorFlow counts traces per Python code object, and every Keras model's predict and train
    functions share theirs: a process that runs five models (evaluate scores three, plus the
    champion) is told it retraces "too often" though each model traced once. No input shape or
    argument avoids it, so this one message is dropped; every other TensorFlow warning stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def drop_false_retracing_warnings() -> None:
    """Install the filter on TensorFlow's logger, once."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NotARetrace) for f in logger.filters):
        logger.addFilter(_NotARetrace())


# What TensorFlow's native code prints on stderr while it is imported, whatever
# TF_CPP_MIN_LOG_LEVEL says: absl's note that logging is not set up yet, and oneDNN's notice
# (its operations are on by default; turning them off would change the numbers).
_IMPORT_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "port.cc:153] oneDNN custom operations are on",
)


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Route file descriptor 2 to a temporary file meanwhile, then pass on every line but
    :data:`_IMPORT_NOISE` (native code writes there, below Python's ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not any(noise in line for noise in _IMPORT_NOISE)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` (once, wherever it is first imported) with its native start-up
    lines filtered out of stderr."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # the real finders find it; only its execution is wrapped
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with _native_stderr_filtered():
                execute(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def quiet_tensorflow_import() -> None:
    """Filter TensorFlow's native start-up lines when it is first imported in this process."""
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
