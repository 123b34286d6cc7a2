"""Where mapped tasks (the features stage's shards) run: local threads, or an existing Dask cluster.

The task runner changes where the work runs, never its result, so it is not a DVC param: it comes
from ``--dask-address`` or the ``CATDOG_DASK_ADDRESS`` environment variable (which ``dvc repro``
passes on to ``catdog stage``), read when a command starts, never at import time.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

__all__ = [
    "DASK_ADDRESS_ENV",
    "LOCAL_WORKERS",
    "dask_address",
    "local_task_runner",
    "task_runner",
    "with_task_runner",
]

DASK_ADDRESS_ENV = "CATDOG_DASK_ADDRESS"
# TensorFlow already uses every core for one shard: more threads would only oversubscribe them.
LOCAL_WORKERS = 1


def local_task_runner() -> ThreadPoolTaskRunner:
    """The default: shards run one at a time in threads of the flow's own process."""
    return ThreadPoolTaskRunner(max_workers=LOCAL_WORKERS)


def dask_address(address: str | None = None) -> str:
    """The Dask scheduler to use: ``address`` if given, else ``$CATDOG_DASK_ADDRESS``, else ''."""
    return (address or os.environ.get(DASK_ADDRESS_ENV, "")).strip()


def task_runner(address: str | None = None) -> TaskRunner[Any]:
    """A Dask task runner connected to :func:`dask_address` if there is one, else local threads.

    The Dask client connects when the first task is submitted, so a run whose features stage is
    up to date never contacts the cluster.
    """
    scheduler = dask_address(address)
    if not scheduler:
        return local_task_runner()
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=scheduler)


def with_task_runner(flow: Any, address: str | None = None) -> Any:
    """``flow`` with the task runner of :func:`task_runner` (same name, same everything else)."""
    return flow.with_options(task_runner=task_runner(address))
