"""Stage tasks retry transient I/O failures with back-off, and nothing else (a real Prefect run)."""

from __future__ import annotations

import errno
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from prefect import flow, task

from tasks.common import TASK_OPTIONS

SMALL_DELAYS = [0.2, 0.6]  # the real option's shape (growing), in tenths of a second


@pytest.fixture(scope="module")
def prefect_run(prefect_api: str) -> Iterator[None]:
    """The session's shared Prefect server records this module's flow runs (a server of their
    own, Prefect's test harness, would cost another start)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield


def attempts_of(failures: list[BaseException]) -> tuple[Callable[[], Any], list[float]]:
    """A task with the stages' options that raises ``failures`` in turn, then returns 'done'."""
    attempts: list[float] = []

    @task(**TASK_OPTIONS)
    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) <= len(failures):
            raise failures[len(attempts) - 1]
        return "done"

    fast = flaky.with_options(retry_delay_seconds=SMALL_DELAYS)

    @flow(name="catdog-retry-test")
    def one_task() -> str:
        return fast()

    return one_task, attempts


def test_retries_are_configured_with_growing_delays():
    delays = TASK_OPTIONS["retry_delay_seconds"]
    assert TASK_OPTIONS["retries"] == len(delays) >= 2
    assert all(later > earlier > 0 for earlier, later in itertools.pairwise(delays))


@pytest.mark.parametrize(
    "transient",
    [
        ConnectionError("connection reset"),
        TimeoutError("read timed out"),
        OSError(errno.EIO, "input/output error"),
    ],
    ids=["connection", "timeout", "eio"],
)
def test_a_transient_io_failure_is_retried_with_back_off(prefect_run, transient):
    run, attempts = attempts_of([transient, transient])
    assert run() == "done"
    assert len(attempts) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= SMALL_DELAYS[0] and gaps[1] >= SMALL_DELAYS[1], gaps


def test_retries_are_bounded(prefect_run):
    run, attempts = attempts_of([ConnectionError("down")] * 5)
    with pytest.raises(ConnectionError):
        run()
    assert len(attempts) == 1 + TASK_OPTIONS["retries"]


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("loss is nan"),
        RuntimeError("training diverged"),
        FileNotFoundError(errno.ENOENT, "no such file", "data/split/manifest.csv"),
        PermissionError(errno.EACCES, "permission denied", "models"),
        MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch"),
    ],
    ids=["value", "runtime", "missing-file", "permission", "tracking-server"],
)
def test_a_training_or_input_failure_is_not_retried(prefect_run, failure):
    run, attempts = attempts_of([failure] * 3)
    with pytest.raises(type(failure)):
        run()
    assert len(attempts) == 1
