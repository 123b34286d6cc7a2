"""Team servers let in only the team: off loopback `catdog serve` needs credentials, every client
sends them from the standard variables, and no file or output holds them."""

from __future__ import annotations

import base64
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from catdog.servers.auth import AuthError, read_credentials, require_credentials
from tests.conftest import bin_dir, make_project_copy, project_env, run
from tests.test_platform import (
    AUTH,
    CREDENTIALS,
    PASSWORD,
    free_port,
    no_file_holds_a_secret,
    port_closed,
    start_catdog_serve,
)

NO_CREDENTIALS = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", *CREDENTIALS)


def bare_env(tmp_path: Path) -> dict[str, str]:
    env = project_env({"KERAS_HOME": str(tmp_path / "keras")})
    for name in NO_CREDENTIALS:
        env.pop(name, None)
    return env


def test_serve_on_all_interfaces_without_credentials_starts_nothing(tmp_path):
    project = make_project_copy(tmp_path / "catdog")
    mlflow_port, prefect_port = free_port(), free_port()
    serve = [str(bin_dir() / "catdog"), "serve", "--host", "0.0.0.0"]
    serve += ["--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)]
    result = subprocess.run(
        serve, cwd=project, env=bare_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "catdog: error: catdog serve --host 0.0.0.0 requires credentials: set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the MLflow admin account) and "
        "PREFECT_API_AUTH_STRING (Prefect's API auth string), or give --credentials FILE kept "
        "outside the repository; nothing was started"
    ]
    assert port_closed(mlflow_port) and port_closed(prefect_port)
    assert not list((project / ".catdog").glob("serve-*.log"))


def test_a_credentials_file_is_read_outside_the_repository_only(tmp_path, monkeypatch):
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    outside = tmp_path / "credentials"
    outside.write_text(
        "export MLFLOW_TRACKING_USERNAME=admin\n"
        f"MLFLOW_TRACKING_PASSWORD='{PASSWORD}'\n"
        f'PREFECT_API_AUTH_STRING="{AUTH}"\n'
        "OTHER=ignored\n"
    )
    creds = read_credentials(outside)
    assert creds.mlflow_user == "admin" and creds.mlflow_password == PASSWORD
    assert creds.prefect_auth == AUTH
    assert PASSWORD not in repr(creds) and AUTH not in repr(creds)
    outside.write_text("MLFLOW_TRACKING_USERNAME=admin\n")
    assert read_credentials(outside) is None  # half a set is no set

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "credentials").write_text(f"MLFLOW_TRACKING_PASSWORD={PASSWORD}\n")
    with pytest.raises(AuthError, match="inside a git repository"):
        read_credentials(repo / "credentials")
    with pytest.raises(AuthError, match="no such file"):
        read_credentials(tmp_path / "missing")


def test_no_server_to_check_is_no_refusal(monkeypatch):
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    require_credentials("sqlite:///store.db", "")  # local store, on-demand Prefect: nothing asked


@pytest.mark.e2e
def test_servers_on_all_interfaces_want_credentials_and_stages_use_them(tmp_path, monkeypatch):
    project = make_project_copy(tmp_path / "catdog")
    mlflow_port, prefect_port = free_port(), free_port()
    env = bare_env(tmp_path)
    server, banner = start_catdog_serve(
        project, {**env, **CREDENTIALS}, mlflow_port, prefect_port, "--host", "0.0.0.0"
    )
    try:
        assert PASSWORD not in banner and AUTH not in banner
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"  # requests to this machine only
        prefect_api = f"http://127.0.0.1:{prefect_port}/api"
        search = f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search).status_code == 401
        assert httpx.get(search, auth=("admin", PASSWORD)).status_code == 200
        flow_runs = f"{prefect_api}/flow_runs/filter"
        assert httpx.post(flow_runs, json={}).status_code == 401
        token = base64.b64encode(AUTH.encode()).decode()
        answer = httpx.post(flow_runs, json={}, headers={"Authorization": f"Basic {token}"})
        assert answer.status_code == 200

        client_env = {
            **env,
            **CREDENTIALS,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "PREFECT_API_URL": prefect_api,
        }
        wrong = {**client_env, "PREFECT_API_AUTH_STRING": "team:guess"}
        refused = run([str(bin_dir() / "catdog"), "stage", "ingest"], project, wrong, check=False)
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
            f"catdog: error: Prefect server {prefect_api} refused the auth string in "
            "PREFECT_API_AUTH_STRING (the team's admin has them), then run this again"
        )
        assert not (project / "data").exists()  # nothing recorded as done

        for stage in ("ingest", "split"):
            run([str(bin_dir() / "catdog"), "stage", stage], project, client_env)
        from mlflow.tracking import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        experiment = MlflowClient(mlflow_url).get_experiment_by_name("catdog")
        runs = MlflowClient(mlflow_url).search_runs([experiment.experiment_id])
        stages = [r.data.tags["catdog.stage"] for r in runs if "catdog.stage" in r.data.tags]
        assert sorted(stages) == ["ingest", "split"]  # each with its own execution's parent run
        # the server remembers a password that passed its check, for that password only
        assert httpx.get(search, auth=("admin", "guess")).status_code == 401
        assert all(r.info.status == "FINISHED" for r in runs)
        flows = httpx.post(flow_runs, json={}, headers={"Authorization": f"Basic {token}"}).json()
        assert sorted(f["name"].split(" · ")[0] for f in flows) == ["ingest", "split"]
        assert all(f["state_type"] == "COMPLETED" for f in flows)
        no_file_holds_a_secret(project, tmp_path / "keras")
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=60)
    assert code == 0
    assert port_closed(mlflow_port) and port_closed(prefect_port)
    no_file_holds_a_secret(project, tmp_path / "keras")
