"""What the terminal shows of a run: Prefect's lines without tracebacks (unless debugging), and
none of TensorFlow's false retracing alarms.

Prefect logs a failed task or flow with its traceback on the console, before catdog's one-line
``catdog: error:`` message. The flow run's logs in Prefect's UI keep the traceback; the terminal
shows Prefect's one-line summary of it and catdog's line, which says what to do.
"""

from __future__ import annotations

import logging

__all__ = ["drop_false_retracing_warnings", "hide_console_tracebacks"]


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


def hide_console_tracebacks() -> None:
    """Leave tracebacks out of Prefect's console output in this process."""
    import prefect.main  # noqa: F401  (sets up Prefect's logging, once: wrap what it made)
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(
            handler.formatter, _WithoutTraceback
        ):
            handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))


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
