"""The team platform end to end: `catdog serve` (MLflow + Prefect servers on loopback), the
pipeline twice with different params, then everything checked through MLflow's and Prefect's own
clients: parent and child runs, lineage tags, registered versions and the champion alias,
completed flow and task runs; then the champion served by `mlflow models serve` answers HTTP
requests carrying real JPEG bytes as `catdog predict` does; then Ctrl-C stops both servers."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED_PHOTOS, bin_dir, make_project_copy, project_env, run
from tracking.lineage import dvc_hash

pytestmark = pytest.mark.e2e

CHAMPION = "models:/catdog@champion"
SCRATCH_2 = ("-S", "scratch.epochs=2")
STAGES = ["ingest", "split", "augment", "features", "classifier", "finetune", "scratch", "evaluate"]
REGISTERED = {
    "classifier": "catdog-classifier",
    "finetune": "catdog-finetuned",
    "scratch": "catdog-scratch",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_catdog_serve(project: Path, env: dict[str, str], mlflow_port: int, prefect_port: int):
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
    banner: list[str] = []
    deadline = time.monotonic() + 240
    while not banner or "Ctrl-C stops both" not in banner[-1]:
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError(f"catdog serve did not come up:\n{server.stderr.read()}")
        banner.append(server.stdout.readline())
    return server, "".join(banner)


def start_model_server(project: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(bin_dir() / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/catdog@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            os.killpg(server.pid, signal.SIGKILL)
            raise AssertionError(f"mlflow models serve did not come up:\n{server.stderr.read()}")
        time.sleep(1)


def prefect_runs(api_url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return flows, client.read_flow_runs(), client.read_task_runs()


def photos_to_send(project: Path) -> list[Path]:
    """Test-split images of the run, and real Kaggle photos when the shared set is there."""
    manifest = pd.read_csv(project / "data/split/manifest.csv")
    test = manifest[manifest["split"] == "test"]["path"].head(4)
    files = [project / p for p in test]
    shared = SHARED_PHOTOS / "train"
    if shared.is_dir():
        files += [shared / "cat.1.jpg", shared / "dog.1.jpg"]
    return files


def test_servers_pipeline_twice_registry_lineage_and_served_champion(tmp_path):
    project = make_project_copy(tmp_path / "catdog")
    mlflow_port, prefect_port, model_port = free_port(), free_port(), free_port()
    env = project_env(
        {"PREFECT_HOME": str(tmp_path / "prefect-home"), "KERAS_HOME": str(tmp_path / "keras")}
    )
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    server, banner = start_catdog_serve(project, env, mlflow_port, prefect_port)
    model_server = None
    try:
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        prefect_api = f"http://127.0.0.1:{prefect_port}/api"
        assert f"export MLFLOW_TRACKING_URI={mlflow_url}" in banner
        assert f"export PREFECT_API_URL={prefect_api}" in banner
        assert httpx.get(f"{mlflow_url}/health").status_code == 200
        assert httpx.get(f"{prefect_api}/health").json() is True
        env = dict(env, MLFLOW_TRACKING_URI=mlflow_url, PREFECT_API_URL=prefect_api)

        # Twice, with different params: the whole pipeline, then an experiment.
        run([str(bin_dir() / "dvc"), "repro"], project, env)
        run([str(bin_dir() / "dvc"), "exp", "run", *SCRATCH_2, "-n", "scratch-2"], project, env)
        shown = json.dumps(
            json.loads(run([str(bin_dir() / "dvc"), "exp", "show", "--json"], project, env).stdout)
        )
        assert "scratch-2" in shown

        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_url)
        experiment = client.get_experiment_by_name("catdog")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        parents = [r for r in runs if r.data.tags.get("catdog.kind") == "pipeline"]
        assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
        children = {
            p.info.run_id: sorted(
                r.info.run_name
                for r in runs
                if r.data.tags.get("mlflow.parentRunId") == p.info.run_id
            )
            for p in parents
        }
        assert sorted(children.values()) == sorted([sorted(STAGES), ["evaluate", "scratch"]])
        in_experiment = {
            r.info.run_name: r
            for r in runs
            if r.data.tags.get("dvc.exp_name") == "scratch-2"
            and "mlflow.parentRunId" in r.data.tags
        }
        assert sorted(in_experiment) == ["evaluate", "scratch"]
        assert in_experiment["scratch"].data.params["scratch.epochs"] == "2"
        assert sorted(p.data.tags["catdog.trigger"] for p in parents) == [
            "dvc exp run",
            "dvc repro",
        ]

        # Lineage on every child run: commit, DVC hashes of its inputs, weights, Prefect flow run.
        head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
        raw_hash = dvc_hash(project / "data/raw")
        child_runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        for child in child_runs:
            tags, stage = child.data.tags, child.info.run_name
            assert child.info.status == "FINISHED", stage
            assert tags["git.commit"] == head and tags["git.dirty"] in {"true", "false"}
            assert tags["dvc.data_raw"] == raw_hash, stage
            assert tags["prefect.flow_run_id"], stage
            if stage not in {"ingest", "split"}:
                assert tags["dvc.manifest"] == dvc_hash(project / "data/split/manifest.csv")
                inputs = [i.dataset for i in child.inputs.dataset_inputs]
                assert [d.digest for d in inputs] == [tags["dvc.manifest"][:36]], stage
            if stage in {"classifier", "finetune", "evaluate"}:
                assert tags["dvc.features"].endswith(".dir"), stage
            if stage in REGISTERED:
                assert tags["weights"] == "untrained" and tags["weights.requested"] == "auto"
        assert {r.info.run_name for r in child_runs} == set(STAGES)

        # Registry: a version per training run, one champion among them and on `catdog`.
        for name in REGISTERED.values():
            versions = client.search_model_versions(f"name = '{name}'")
            assert len(versions) == (2 if name == "catdog-scratch" else 1), name
            assert all(v.tags["git.commit"] == head for v in versions)
        metrics = json.loads((project / "reports/metrics.json").read_text())
        best = max(REGISTERED, key=lambda m: (metrics[m]["accuracy"], metrics[m]["roc_auc"]))
        holders = [
            n for n in REGISTERED.values() if "champion" in client.get_registered_model(n).aliases
        ]
        assert holders == [REGISTERED[best]]
        champion = client.get_model_version_by_alias(REGISTERED[best], "champion")
        assert champion.tags["dvc.model"] == dvc_hash(project / f"models/{best}.keras")
        served = client.get_model_version_by_alias("catdog", "champion")
        assert served.tags["catdog.source"] == f"{REGISTERED[best]}/{champion.version}"

        # catdog lineage names the data, commit and params that made the champion.
        lineage = json.loads(
            run(
                [str(bin_dir() / "catdog"), "lineage", "catdog@champion", "--json"], project, env
            ).stdout
        )
        assert lineage["run"]["stage"] == best and lineage["git"]["commit"] == head
        assert lineage["data"]["data/raw"] == raw_hash
        trained_by = client.get_run(champion.run_id)
        assert lineage["params"] == trained_by.data.params and lineage["params"]

        # Prefect: every flow run and task run completed; MLflow points at real flow runs.
        flows, flow_runs, task_runs = prefect_runs(prefect_api)
        assert {flows[f.flow_id] for f in flow_runs} == {f"catdog-{s}" for s in STAGES}
        assert all(f.state_type.value == "COMPLETED" for f in flow_runs)
        assert {r.data.tags["prefect.flow_run_id"] for r in child_runs} <= {
            str(f.id) for f in flow_runs
        }
        task_names = {t.name.rsplit("-", 1)[0] for t in task_runs}
        assert set(STAGES) <= task_names
        assert all(t.state_type.value == "COMPLETED" for t in task_runs)

        # Serve the champion; real JPEG bytes over HTTP give catdog predict's probabilities.
        model_server = start_model_server(project, env, model_port)
        files = photos_to_send(project)
        body = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(f.read_bytes()).decode()] for f in files],
            }
        }
        response = httpx.post(f"http://127.0.0.1:{model_port}/invocations", json=body, timeout=120)
        assert response.status_code == 200, response.text
        answers = pd.DataFrame(response.json()["predictions"])
        out = tmp_path / "predict.csv"
        predict = [str(bin_dir() / "catdog"), "predict", *map(str, files)]
        run(
            [*predict, "--model", CHAMPION, "--out", str(out)],
            project,
            env,
        )
        expected = pd.read_csv(out)
        assert list(expected["path"]) == [str(f) for f in files]
        np.testing.assert_allclose(answers["prob_dog"], expected["prob_dog"], atol=1e-6)
        assert list(answers["label"]) == list(expected["label"])
        assert (answers["error"] == "").all()
    finally:
        if model_server is not None:
            os.killpg(model_server.pid, signal.SIGTERM)
            model_server.wait(timeout=60)
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=60)
    assert code == 0
    for port in (mlflow_port, prefect_port, model_port):
        assert port_closed(port), f"port {port} still open"
