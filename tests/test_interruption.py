"""One run per workspace: a second one is refused while the first runs; a killed ingest leaves
nothing a re-run would trust, its claim on the workspace lapses, the re-run equals a clean run
and marks the killed execution's MLflow runs KILLED."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import lock_outs, make_project_copy, run, training_started

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


def test_a_second_run_is_refused_while_one_runs_and_a_killed_one_lets_go(tmp_path, e2e_env):
    project = make_project_copy(tmp_path / "catdog")
    command = [sys.executable, "-m", "cli", "stage"]
    run([*command, "ingest"], project, e2e_env)
    run([*command, "split"], project, e2e_env)
    training = subprocess.Popen(
        [*command, "scratch", "-S", "scratch.epochs=500"],
        cwd=project,
        env=e2e_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not training_started(project / "mlflow.db", "scratch"):
            assert training.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        _second_runs_are_refused(project, e2e_env, training.pid)
        assert training.poll() is None, "training ended before every refusal was checked"
        os.killpg(training.pid, signal.SIGKILL)
    finally:
        training.wait(timeout=30)
    run([*command, "split"], project, e2e_env)  # the dead run's claim has lapsed


def _second_runs_are_refused(project: Path, env: dict[str, str], pid: int) -> None:
    refusal = re.compile(
        rf"catdog: error: {re.escape(str(project))}: another pipeline run is in progress in this "
        rf"workspace: `catdog stage scratch` \(pid {pid}, started \d\d:\d\d:\d\d\); wait for "
        rf"it to finish or stop it \(kill {pid}\), then run this again"
    )
    params = (project / "params.yaml").read_bytes()
    for command in (["run"], ["stage", "split"], ["run", "-S", "split.seed=3"]):
        started = time.monotonic()
        result = run([sys.executable, "-m", "cli", *command], project, env, check=False)
        assert result.returncode == 2 and time.monotonic() - started < 30
        assert refusal.fullmatch(result.stderr.strip().splitlines()[-1]), result.stderr[-2000:]
    assert (project / "params.yaml").read_bytes() == params  # the refused -S wrote nothing
    dvc = run([str(Path(sys.executable).parent / "dvc"), "repro"], project, env, check=False)
    assert dvc.returncode != 0 and "Unable to acquire lock" in dvc.stderr + dvc.stdout


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
    experiment = client.get_experiment_by_name("catdog")
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
    leftovers = [p.name for p in (killed / "data").iterdir() if ".tmp-" in p.name]
    assert leftovers == []  # the killed run's staging folders were cleaned up
