"""catdog serve: real MLflow and Prefect servers on loopback, used by a stage, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import bin_dir, make_project_copy, project_env, run

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_then_a_stage_logs_to_both_servers_then_ctrl_c_stops_them(tmp_path):
    project = make_project_copy(tmp_path / "catdog")
    mlflow_port, prefect_port = free_port(), free_port()
    env = project_env(
        {"PREFECT_HOME": str(tmp_path / "prefect-home"), "KERAS_HOME": str(tmp_path / "keras")}
    )
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [
            str(bin_dir() / "catdog"),
            "serve",
            "--mlflow-port",
            str(mlflow_port),
            "--prefect-port",
            str(prefect_port),
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = []
        deadline = time.monotonic() + 240
        while not banner or "Ctrl-C stops both" not in banner[-1]:
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
            banner.append(server.stdout.readline())
        text = "".join(banner)
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        prefect_api = f"http://127.0.0.1:{prefect_port}/api"
        assert f"export MLFLOW_TRACKING_URI={mlflow_url}" in text
        assert f"export PREFECT_API_URL={prefect_api}" in text
        assert httpx.get(f"{mlflow_url}/health").status_code == 200
        assert httpx.get(f"{prefect_api}/health").json() is True

        stage_env = dict(env, MLFLOW_TRACKING_URI=mlflow_url, PREFECT_API_URL=prefect_api)
        run([sys.executable, "-m", "flows.cli", "stage", "ingest"], project, stage_env)

        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_url)
        experiment = client.get_experiment_by_name("catdog")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags) == [
            "ingest"
        ]
        flow_runs = httpx.post(f"{prefect_api}/flow_runs/filter", json={}).json()
        assert [(r["name"] != "", r["state_type"]) for r in flow_runs] == [(True, "COMPLETED")]
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=60)
    assert code == 0
    for port in (mlflow_port, prefect_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
