"""Faults of the tracking server, with real servers: down at start, killed mid-run, then re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import free_port, make_project_copy, run

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 120


def healthy(
    process: subprocess.Popen[bytes], health: str, log: Path, name: str
) -> subprocess.Popen[bytes]:
    """``process`` once its ``health`` endpoint answers 200 (its log's tail if it dies first)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the {name} server never answered"
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def start_mlflow_server(store: Path, port: int) -> subprocess.Popen[bytes]:
    """A real MLflow tracking server on loopback (the command `catdog serve` runs), healthy."""
    store.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    with (store / "server.log").open("ab") as log:
        # fmt: off
        process = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "mlartifacts"),
                "--host", "127.0.0.1", "--port", str(port),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # its workers too go with one killpg
        )
        # fmt: on
    return healthy(process, f"http://127.0.0.1:{port}/health", store / "server.log", "MLflow")


def kill_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_server_down_at_start_fails_within_seconds_naming_it(tmp_path, e2e_env):
    project = make_project_copy(tmp_path / "catdog")
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    # retrying the dead server (minutes) would end in TimeoutExpired; how soon the refusal
    # comes is measured by bench/faults.py, not asserted here
    result = run(
        [sys.executable, "-m", "catdog.cli", "stage", "ingest"],
        project,
        dict(e2e_env, MLFLOW_TRACKING_URI=uri),
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"catdog: error: MLflow tracking server {uri} is not answering" in result.stderr
    assert "catdog serve" in result.stderr and "MLFLOW_TRACKING_URI" in result.stderr
    assert not (project / "data" / "raw").exists()
    assert not (project / "mlflow.db").exists()  # nothing went to the local store either


def test_fallback_to_the_local_store_is_opt_in_and_loud(tmp_path, e2e_env):
    project = make_project_copy(tmp_path / "catdog")
    uri = f"http://127.0.0.1:{free_port()}"
    env = dict(e2e_env, MLFLOW_TRACKING_URI=uri, CATDOG_TRACKING_FALLBACK="local")
    result = run([sys.executable, "-m", "catdog.cli", "stage", "ingest"], project, env)
    assert f"MLflow tracking server {uri} is not answering" in result.stderr
    assert f"sqlite:///{project / 'mlflow.db'}" in result.stderr
    assert (project / "data" / "raw").is_dir()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("catdog")
    runs = client.search_runs([experiment.experiment_id], "tags.`catdog.stage` = 'ingest'")
    assert [r.info.status for r in runs] == ["FINISHED"]


def _epochs_logged(client, stage: str) -> int:
    """Epochs of ``stage``'s child run the server has, 0 before it exists."""
    experiment = client.get_experiment_by_name("catdog")
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id], f"tags.`catdog.stage` = '{stage}'")
    if not runs:
        return 0
    return len(client.get_metric_history(runs[0].info.run_id, "loss"))


def test_server_killed_mid_stage_fails_clearly_then_rerun_completes(
    tmp_path, e2e_env, record_property
):
    project = make_project_copy(tmp_path / "catdog", {"scratch.epochs": 8})
    store = tmp_path / "mlflow-server"
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = dict(e2e_env, MLFLOW_TRACKING_URI=uri)
    server = start_mlflow_server(store, port)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        log_path = tmp_path / "repro.log"  # a file, not a pipe nobody reads while it runs
        with log_path.open("w") as log:
            repro = subprocess.Popen(
                ["dvc", "repro", "scratch"], cwd=project, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 300
        while _epochs_logged(client, "scratch") < 2:
            assert repro.poll() is None, f"dvc repro ended early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, "scratch never logged two epochs"
            time.sleep(0.5)
        kill_server(server)
        killed = time.monotonic()
        repro.wait(timeout=300)
        output = log_path.read_text()
        failed_after = time.monotonic() - killed
        record_property("failed_after_kill_s", round(failed_after, 1))
        assert repro.returncode != 0, output[-4000:]
        assert f"catdog: error: MLflow tracking server {uri} stopped answering" in output
        assert "not recorded as done" in output
        lock = yaml.safe_load((project / "dvc.lock").read_text())
        assert {"ingest", "split"} <= set(lock["stages"]), lock["stages"].keys()
        assert "scratch" not in lock["stages"]  # DVC does not take the failed stage as done

        server = start_mlflow_server(store, port)  # same port, same stores
        rerun = run(["dvc", "repro", "scratch"], project, env)
        assert "Running stage 'scratch'" in rerun.stdout
        assert "scratch" in yaml.safe_load((project / "dvc.lock").read_text())["stages"]
        assert "up to date" in run(["dvc", "status", "scratch"], project, env).stdout

        experiment = client.get_experiment_by_name("catdog")
        runs = client.search_runs([experiment.experiment_id], "tags.`catdog.stage` = 'scratch'")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        assert len(finished) == 1, [r.info.status for r in runs]
        assert len(client.get_metric_history(finished[0].info.run_id, "loss")) == 8
        stages = {
            r.data.tags.get("catdog.stage")
            for r in client.search_runs([experiment.experiment_id])
            if r.info.status == "FINISHED"
        }
        assert {"ingest", "split", "scratch"} <= stages
    finally:
        kill_server(server)


def _children(pid: int, word: str) -> list[psutil.Process]:
    """The processes under ``pid`` whose command line holds ``word``, outermost first."""
    return [
        child
        for child in psutil.Process(pid).children(recursive=True)
        if word in " ".join(child.cmdline())
    ]


def test_serve_names_a_dead_server_restarts_it_and_keeps_the_other_up(tmp_path, e2e_env):
    from tests.test_platform import start_catdog_serve

    project = make_project_copy(tmp_path / "catdog")
    mlflow_port, prefect_port = free_port(), free_port()
    env = {k: v for k, v in e2e_env.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    serve, _ = start_catdog_serve(project, env, mlflow_port, prefect_port)
    try:
        mlflow = _children(serve.pid, "mlflow server")[0]
        os.killpg(mlflow.pid, signal.SIGKILL)  # the server and its workers, as the OOM killer may
        line = serve.stderr.readline()
        assert line.startswith(
            f"catdog serve: the MLflow tracking server stopped (pid {mlflow.pid} killed by "
            "SIGKILL); the Prefect server keeps serving; restarting it (log: "
        ), line
        health = httpx.get(f"http://127.0.0.1:{prefect_port}/api/health", timeout=10)
        assert health.status_code == 200  # Prefect was not taken down with it
        assert serve.stderr.readline() == (
            f"catdog serve: the MLflow tracking server is back at http://127.0.0.1:{mlflow_port}\n"
        )
        assert httpx.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=10).status_code == 200
        assert serve.poll() is None
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)
    assert serve.returncode == 0, serve.stderr.read()


def start_prefect_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    """A real Prefect server on loopback in its own home, healthy."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    with (home / "server.log").open("ab") as log:
        # fmt: off
        process = subprocess.Popen(
            [
                sys.executable, "-m", "prefect", "server", "start",
                "--host", "127.0.0.1", "--port", str(port), "--analytics-off",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
        # fmt: on
    return healthy(process, f"http://127.0.0.1:{port}/api/health", home / "server.log", "Prefect")


def test_prefect_server_killed_mid_run_stops_training_and_fails_in_one_line(tmp_path, e2e_env):
    from tests.conftest import training_started

    project = make_project_copy(tmp_path / "catdog", {"scratch.epochs": 400})
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = start_prefect_server(tmp_path / "prefect", port)
    env = dict(e2e_env, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "prefect"))
    try:
        log_path = tmp_path / "run.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "catdog"), "run"],
                cwd=project,
                env=env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 300
        while not training_started(project / "mlflow.db", "scratch"):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "scratch never logged an epoch"
            time.sleep(0.5)
        kill_server(server)
        # Training went on to its end, then Prefect's own retries (5 per call, 2 to 32 s apart)
        # took about 5 minutes more; about 35 s now.
        process.wait(timeout=90)
        output = log_path.read_text()
        assert process.returncode == 2, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert output.strip().splitlines()[-1] == (
            f"catdog: error: PREFECT_API_URL={api}: the Prefect server stopped answering during "
            "the run (connection refused); the stage that was running is not recorded as done. "
            "Start the server again (`catdog serve`, or let `catdog run` start the project's "
            "own) and run the same command again."
        )
        assert not (project / "models/scratch.keras").exists()
        assert "scratch" not in yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    finally:
        kill_server(server)
