"""A killed ingest leaves nothing a re-run would trust; the re-run equals a clean run and marks
the killed execution's MLflow runs KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import lock_outs, make_project_copy, run

pytestmark = pytest.mark.e2e


def _staged_images(data_dir: Path) -> int:
    """Images already written to the ingest's staging folder (not the source extraction)."""
    if not data_dir.is_dir():
        return 0
    total = 0
    for staging in data_dir.glob(".raw.tmp-*"):
        if "source" not in staging.name:
            total += sum(1 for _ in staging.glob("*/*"))
    return total


def test_sigkill_half_way_then_rerun_equals_an_uninterrupted_run(tmp_path, e2e_env):
    params = {"data.synthetic.per_class": 600, "ingest.workers": 1}
    killed = make_project_copy(tmp_path / "killed", params)
    clean = make_project_copy(tmp_path / "clean", params)
    command = [sys.executable, "-m", "cli", "stage", "ingest"]
    process = subprocess.Popen(
        command,
        cwd=killed,
        env=e2e_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while _staged_images(killed / "data") < 200:
            assert process.poll() is None, "ingest finished before it could be killed"
            assert time.monotonic() < deadline, "ingest never started writing"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "data" / "raw").exists()  # nothing half-written under the real name
    assert not (killed / "reports" / "ingest.json").exists()

    assert not (killed / "dvc.lock").exists()  # the killed stage is not recorded as done
    client = MlflowClient(f"sqlite:///{killed / 'mlflow.db'}")
    (experiment,) = client.search_experiments()
    running = client.search_runs([experiment.experiment_id])
    assert {r.info.status for r in running} == {"RUNNING"} and len(running) == 2

    run(command, killed, e2e_env)
    run(command, clean, e2e_env)
    assert lock_outs(killed)["ingest"] == lock_outs(clean)["ingest"]  # same bytes, by DVC's hash
    status = {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}
    assert [status[r.info.run_id] for r in running] == ["KILLED", "KILLED"]
    assert sorted(status.values()) == ["FINISHED", "FINISHED", "KILLED", "KILLED"]
    assert (killed / "reports/ingest.json").read_text() == (
        clean / "reports/ingest.json"
    ).read_text()
    leftovers = [p.name for p in (killed / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the killed run's staging folders were cleaned up
