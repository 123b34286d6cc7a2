"""What the machine did while a stage ran: MLflow's system metrics (CPU, memory, disk, network,
GPU when there is one), sampled into the stage's run on steps of their own.

MLflow copies every metric a run has at the step a model is logged at onto that model, so a
model logged at step 3 after three samples would carry ``system/*`` as if they were its results.
:func:`model_step` stops sampling and returns a step no metric of the run uses.
"""

from __future__ import annotations

import logging

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient

__all__ = ["model_step", "stop_watching", "watch"]

_log = logging.getLogger(__name__)
_MONITORS: dict[str, SystemMetricsMonitor] = {}
_EVERY_SAMPLE = "system/cpu_utilization_percentage"  # present in each sample, on any machine


def watch(run_id: str) -> None:
    """Sample the machine into run ``run_id`` until :func:`stop_watching` (every 10 s, MLflow's
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``)."""
    try:
        monitor = SystemMetricsMonitor(run_id)
        monitor.start()
    except Exception as error:  # the stage matters more than its CPU chart
        _log.warning("system metrics are not recorded for this stage: %s", error)
        return
    _MONITORS[run_id] = monitor


def stop_watching(run_id: str) -> None:
    """Stop sampling into ``run_id`` and log what was sampled; nothing if not watched."""
    monitor = _MONITORS.pop(run_id, None)
    if monitor is not None:
        monitor.finish()


def model_step(run_id: str, first_free: int) -> int:
    """The step to log a model of run ``run_id`` at: ``first_free`` (past the epochs and the
    stage's own metrics) or past the last system sample, whichever is later. Sampling stops
    here, so none lands on that step afterwards."""
    stop_watching(run_id)
    samples = MlflowClient().get_metric_history(run_id, _EVERY_SAMPLE)
    return max([first_free, *(sample.step + 1 for sample in samples)])
