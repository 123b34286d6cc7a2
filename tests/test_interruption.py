"""One run per workspace, whichever door started it: a second one is refused while the first
trains; killed, it leaves no model and no record of its stage, its claim on the workspace lapses
and the next run marks its MLflow runs KILLED. A killed ingest leaves nothing a re-run would
trust, and the re-run equals a clean run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
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


FIRST_RUNS = {  # the first run's command line, and how the refusal names it
    "catdog stage": (["-m", "catdog.cli", "stage", "scratch"], "catdog stage scratch"),
    "catdog run": (["-m", "catdog.cli", "run"], "catdog run"),
    "dvc repro": (["-m", "dvc", "repro", "scratch"], "dvc repro scratch"),
    "dvc exp run": (["-m", "dvc", "exp", "run", "scratch"], "dvc exp run scratch"),
}


@pytest.mark.parametrize("first", list(FIRST_RUNS))
def test_a_second_run_is_refused_while_one_trains_and_a_killed_one_leaves_nothing(
    first, tmp_path, e2e_env
):
    project = make_project_copy(tmp_path / "catdog", {"scratch.epochs": 500})
    command = [sys.executable, "-m", "catdog.cli", "stage"]
    if first == "catdog stage":
        run([*command, "ingest"], project, e2e_env)
        run([*command, "split"], project, e2e_env)
    arguments, named = FIRST_RUNS[first]
    training = subprocess.Popen(
        [sys.executable, *arguments],
        cwd=project,
        env=e2e_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not training_started(project / "mlflow.db", "scratch"):
            assert training.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        _second_runs_are_refused(project, e2e_env, training.pid, named)
        assert training.poll() is None, "training ended before every refusal was checked"
        os.killpg(training.pid, signal.SIGKILL)
    finally:
        training.wait(timeout=30)
    assert not (project / "models/scratch.keras").exists()  # no model from a killed training
    lock = project / "dvc.lock"
    recorded = yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}
    assert "scratch" not in recorded  # nor a record of it
    run([*command, "split"], project, e2e_env)  # the dead run's claim has lapsed
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("catdog")
    killed = client.search_runs([experiment.experiment_id], "tags.`catdog.stage` = 'scratch'")
    assert [r.info.status for r in killed] == ["KILLED"]  # ended by the next run


def _second_runs_are_refused(project: Path, env: dict[str, str], pid: int, named: str) -> None:
    refusal = re.compile(
        rf"catdog: error: {re.escape(str(project))}: another pipeline run is in progress in this "
        rf"workspace: `{re.escape(named)}` \(pid {pid}, started \d\d:\d\d:\d\d\); wait for "
        rf"it to finish or stop it \(kill {pid}\), then run this again"
    )
    params = (project / "params.yaml").read_bytes()
    for command in (["run"], ["stage", "split"], ["run", "-S", "split.seed=3"]):
        # a refusal that waited for the training run would end in TimeoutExpired
        result = run([sys.executable, "-m", "catdog.cli", *command], project, env, 120, False)
        assert result.returncode == 2
        assert refusal.fullmatch(result.stderr.strip().splitlines()[-1]), result.stderr[-2000:]
    assert (project / "params.yaml").read_bytes() == params  # the refused -S wrote nothing
    dvc = run([str(Path(sys.executable).parent / "dvc"), "repro"], project, env, check=False)
    said = dvc.stderr + dvc.stdout  # DVC's repository lock, or its lock on the stage's files
    assert dvc.returncode != 0 and ("Unable to acquire lock" in said or "rwlock" in said), said


def test_sigkill_half_way_then_rerun_equals_an_uninterrupted_run(tmp_path, e2e_env):
    params = {"data.synthetic.per_class": 600, "ingest.workers": 1}
    killed = make_project_copy(tmp_path / "killed", params)
    clean = make_project_copy(tmp_path / "clean", params)
    command = [sys.executable, "-m", "catdog.cli", "stage", "ingest"]
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
