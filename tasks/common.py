"""What every stage task shares: its result type, I/O-only retries and progress logging."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from catdog.workspace.storage import fault_errno

__all__ = ["TASK_OPTIONS", "epoch_progress", "progress_logger", "run_logger"]


def _retry_only_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient I/O failures only; a failed training or bad input is not retried."""
    try:
        state.result()
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False  # a wrong path or permission will not fix itself
    except OSError as error:  # a full or read-only disk will not fix itself either
        return fault_errno(error) is None
    except BaseException:
        return False
    return False


# Freshness is decided by DVC (dvc.lock) or by `catdog run`'s stamps, never by Prefect's cache.
TASK_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": _retry_only_io,
    "persist_result": False,
}


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a run, the ``catdog`` logger outside one."""
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger("catdog")


def progress_logger(what: str, *, every: float = 0.1) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that logs about every ``every`` of the work."""
    logger = run_logger()
    state = {"next": 0.0}

    def report(done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if fraction >= state["next"] or done == total:
            logger.info("%s: %d/%d (%.0f%%)", what, done, total, 100 * fraction)
            state["next"] = fraction + every

    return report


def epoch_progress(
    stage: str, epochs: int, then: Callable[[int, Mapping[str, float]], None] | None = None
) -> Callable[[int, Mapping[str, float]], None]:
    """An ``on_epoch_end(epoch, logs)`` callback: one log line per epoch, then ``then``.

    The line goes to the terminal and to the Prefect flow run's logs (Keras' own printing goes
    to stdout only, which Prefect does not see).
    """
    logger = run_logger()
    last = [time.perf_counter()]

    def report(epoch: int, logs: Mapping[str, float]) -> None:
        now = time.perf_counter()
        values = "  ".join(f"{key} {value:.4f}" for key, value in logs.items())
        logger.info(
            "%s: epoch %d/%d  %s  (%.1f s)", stage, epoch + 1, epochs, values, now - last[0]
        )
        last[0] = now
        if then is not None:
            then(epoch, logs)

    return report
