"""The team platform end to end: `catdog serve --auth` (MLflow + Prefect servers on loopback,
behind credentials), the pipeline three times (`dvc repro`, `dvc exp run`, `catdog run`), then
everything checked through MLflow's and Prefect's own clients and in a real browser: parent and
child runs named after their execution, lineage tags, registered versions and the champion,
tagged flow runs with their artifacts and per-epoch logs, MLflow's compare and Models pages;
then the champion served by `mlflow models serve` answers HTTP requests carrying real JPEG bytes
as `catdog predict` does; no file holds a secret; Ctrl-C stops both servers."""

from __future__ import annotations

import base64
import itertools
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

from catdog.stage_table import STAGE_NAMES
from catdog.tracking.lineage import dvc_hash
from catdog.tracking.store import MODEL_TRAINING_VIEW
from tests.conftest import (
    SCREENSHOTS,
    SHARED_PHOTOS,
    bin_dir,
    chromium,
    free_port,
    make_project_copy,
    project_env,
    run,
)

pytestmark = pytest.mark.e2e

CHAMPION = "models:/catdog@champion"
SCRATCH_2 = ("-S", "scratch.epochs=2")
STAGES = list(STAGE_NAMES)
REGISTERED = {
    "classifier": "catdog-classifier",
    "finetune": "catdog-finetuned",
    "scratch": "catdog-scratch",
}


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start_catdog_serve(
    project: Path, env: dict[str, str], mlflow_port: int, prefect_port: int, *extra: str
):
    server = subprocess.Popen(
        [
            str(bin_dir() / "catdog"),
            "serve",
            "--mlflow-port",
            str(mlflow_port),
            "--prefect-port",
            str(prefect_port),
            *extra,
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner: list[str] = []
    deadline = time.monotonic() + 240
    while not banner or "Ctrl-C stops" not in banner[-1]:
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


def prefect_runs(api_url: str, auth: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings = {PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth}
    with temporary_settings(settings), get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        flow_runs = client.read_flow_runs()
        artifacts = {
            str(run.id): {
                a.key: a
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
                    )
                )
            }
            for run in flow_runs
        }
        return flows, flow_runs, client.read_task_runs(), artifacts


def photos_to_send(project: Path) -> list[Path]:
    """Test-split images of the run, and real Kaggle photos when the shared set is there."""
    manifest = pd.read_csv(project / "data/split/manifest.csv")
    test = manifest[manifest["split"] == "test"]["path"].head(4)
    files = [project / p for p in test]
    shared = SHARED_PHOTOS / "train"
    if shared.is_dir():
        files += [shared / "cat.1.jpg", shared / "dog.1.jpg"]
    return files


PASSWORD = "s3cret-pw-42!"  # the admin's: a test greps every file for it (and AUTH)
AUTH = "team:t0ken-xyz-9"
CREDENTIALS = {
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": PASSWORD,
    "PREFECT_API_AUTH_STRING": AUTH,
}


def refuses_without_credentials(mlflow_url: str, prefect_api: str) -> None:
    """Both APIs answer 401 to a client without credentials; their pages ask for a login."""
    search = f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search).status_code == 401
    assert httpx.get(search, auth=("admin", "wrong")).status_code == 401
    page = httpx.get(mlflow_url)
    assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic")
    assert httpx.post(f"{prefect_api}/flow_runs/filter", json={}).status_code == 401
    with chromium() as browser:
        tab = browser.new_page()
        tab.goto(prefect_api.removesuffix("/api") + "/runs")
        tab.get_by_placeholder("admin:pass").wait_for(timeout=30_000)  # Prefect's login form
        tab.screenshot(path=SCREENSHOTS / "prefect-login.png")


def check_mlflow_runs(client, experiment, project: Path) -> dict[str, list]:
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("catdog.kind") == "pipeline"]
    assert sorted(p.data.tags["catdog.trigger"] for p in parents) == [
        "catdog run",
        "dvc exp run",
        "dvc repro",
    ]
    assert all(p.info.status == "FINISHED" for p in parents)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "Compare" in experiment.tags["mlflow.note.content"]
    children = {
        p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        for p in parents
    }
    stages = sorted(sorted(r.data.tags["catdog.stage"] for r in c) for c in children.values())
    assert stages == sorted([sorted(STAGES), ["evaluate", "scratch"], ["evaluate", "scratch"]])
    for parent in parents:  # every run names its execution
        assert parent.info.run_name.startswith(parent.data.tags["catdog.trigger"])
        for child in children[parent.info.run_id]:
            stage = child.data.tags["catdog.stage"]
            assert child.info.run_name == f"{stage} · {parent.info.run_name}"
        assert parent.data.params["scratch.epochs"] and "scratch_accuracy" in parent.data.metrics
    evaluates = [r for r in runs if r.data.tags.get("catdog.stage") == "evaluate"]
    assert len({r.info.run_name for r in evaluates}) == 3  # no "evaluate, evaluate"
    assert {r.data.params["scratch.epochs"] for r in evaluates} == {"1", "2", "3"}  # upstream
    # logged models: named after themselves; their metrics are test metrics, nothing else
    metrics = json.loads((project / "reports/metrics.json").read_text())
    models = client.search_logged_models([experiment.experiment_id])
    assert {m.name for m in models} == {"classifier", "finetune", "scratch", "champion"}
    for model in models:
        assert {m.key for m in model.metrics} == {f"test_{k}" for k in metrics["classifier"]}
        assert {m.dataset_name for m in model.metrics} == {"catdog-test-split"}
    newest = max((m for m in models if m.name == "scratch"), key=lambda m: m.creation_timestamp)
    test_accuracy = {m.key: m.value for m in newest.metrics}["test_accuracy"]
    assert test_accuracy == pytest.approx(metrics["scratch"]["accuracy"])
    return {"runs": runs, "evaluates": evaluates}


def check_prefect(prefect_api: str, mlflow_runs: list) -> str:
    """Every stage's flow run: named, tagged, with its artifacts; returns one scratch run's id."""
    flows, flow_runs, task_runs, artifacts = prefect_runs(prefect_api, AUTH)
    stage_runs = [f for f in flow_runs if flows[f.flow_id] != "catdog-pipeline"]
    assert {flows[f.flow_id] for f in stage_runs} == {f"catdog-{s}" for s in STAGES}
    assert all(f.state_type.value == "COMPLETED" for f in flow_runs)
    for flow_run in stage_runs:
        stage = flows[flow_run.flow_id].removeprefix("catdog-")
        assert flow_run.name.startswith(f"{stage} · "), flow_run.name
        tags = set(flow_run.tags)
        assert {"catdog", f"stage:{stage}", f"execution:{flow_run.name.split(' · ', 1)[1]}"} <= tags
        assert any(t.startswith("trigger:") for t in tags)
        assert any(t.startswith("commit:") for t in tags)
        assert f"catdog-{stage}-mlflow-run" in artifacts[str(flow_run.id)]
        if stage in REGISTERED:
            assert f"catdog-{stage}-history" in artifacts[str(flow_run.id)]
        if stage == "evaluate":
            published = artifacts[str(flow_run.id)]
            assert {
                "catdog-test-metrics",
                "catdog-paired-comparisons",
                "catdog-comparison",
                "catdog-champion-decision",
            } <= published.keys()
            rows = published["catdog-test-metrics"].data
            rows = json.loads(rows) if isinstance(rows, str) else rows
            assert {"accuracy_ci_low", "accuracy_ci_high", "test_images"} <= rows[0].keys()
            assert "95% interval" in published["catdog-comparison"].data
            decision = published["catdog-champion-decision"].data
            assert decision.startswith("# Champion: ") and "evaluate.champion_gate" in decision
    assert any("exp:scratch-2" in f.tags for f in stage_runs)
    stage_tags = [r.data.tags for r in mlflow_runs if "catdog.stage" in r.data.tags]
    recorded = {tags["prefect.flow_run_id"] for tags in stage_tags}
    assert recorded <= {str(f.id) for f in flow_runs}
    task_names = {t.name.rsplit("-", 1)[0] for t in task_runs}
    assert {*STAGES, "promote-champion", "record-models-worth"} <= task_names
    return str(next(f.id for f in stage_runs if f.name.startswith("scratch · dvc repro")))


def close_assistant(tab) -> None:
    """Close the MLflow Assistant panel, which opens by itself on a browser's first visit."""
    panel = tab.get_by_role("button", name="New Chat")  # in the panel's header
    try:
        panel.wait_for(timeout=10_000)
    except Exception:  # a Playwright timeout: it did not open this time
        return
    tab.get_by_role("button", name="Close").first.click()
    panel.wait_for(state="hidden", timeout=10_000)


def shown_picture(tab, selector: str) -> None:
    """Wait until the page shows a picture matching ``selector``, decoded, not a broken icon."""
    picture = tab.locator(selector).first
    picture.wait_for(timeout=60_000)
    tab.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete }", arg=selector
    )
    assert picture.evaluate("i => i.naturalWidth") > 300, selector


def check_in_a_browser(mlflow_url, prefect_url, experiment_id, seen, scratch_run) -> None:
    """What a person sees, page by page, with the screenshots saved."""
    runs, evaluates = seen["runs"], seen["evaluates"]
    login = {"username": "admin", "password": PASSWORD}
    with chromium(http_credentials=login, viewport={"width": 1800, "height": 1000}) as browser:
        tab = browser.new_page()
        tab.goto(f"{prefect_url}/runs")
        tab.get_by_placeholder("admin:pass").fill(AUTH)
        tab.get_by_role("button", name="Login").click()
        tab.get_by_text("Flow runs").first.wait_for(timeout=60_000)
        tab.goto(f"{prefect_url}/runs")  # afresh: without the toasts of the refused first load
        for label in ("scratch · dvc repro", "scratch · dvc exp run scratch-2", "scratch · catdog"):
            tab.get_by_text(label).first.wait_for(timeout=60_000)
        tab.screenshot(path=SCREENSHOTS / "prefect-runs.png", full_page=True)
        tab.goto(f"{prefect_url}/runs/flow-run/{scratch_run}")
        tab.get_by_text("scratch: epoch 1/1").wait_for(timeout=60_000)  # per-epoch lines
        tab.screenshot(path=SCREENSHOTS / "prefect-flow-run-logs.png")
        tab.get_by_text("Artifacts", exact=True).click()
        tab.get_by_text("catdog-scratch-history").first.wait_for(timeout=30_000)
        tab.get_by_text("catdog-scratch-mlflow-run").first.wait_for(timeout=30_000)
        tab.screenshot(path=SCREENSHOTS / "prefect-flow-run-artifacts.png")
        # where the scratch model looked: evaluate's Grad-CAM grid, in the artifact itself
        tab.goto(f"{prefect_url}/artifacts/key/catdog-gradcam-scratch")
        tab.locator("a[href*='/artifacts/artifact/']").first.click()
        shown_picture(tab, "img[src^='data:image/jpeg']")
        tab.get_by_text("scratch: where it looked").wait_for(timeout=30_000)
        tab.screenshot(path=SCREENSHOTS / "prefect-gradcam-artifact.png", full_page=True)

        pair = [r for r in evaluates if r.data.params["scratch.epochs"] in ("1", "2")]
        ids = json.dumps([r.info.run_id for r in pair])
        experiments = json.dumps([experiment_id])
        tab.goto(
            f"{mlflow_url}/#/compare-runs?runs={ids}&experiments={experiments}"
            f"&{MODEL_TRAINING_VIEW}"
        )
        diff_only = tab.get_by_text("Show diff only").first  # the params' switch comes first
        diff_only.wait_for(timeout=60_000)
        close_assistant(tab)
        diff_only.click()
        for evaluate in pair:  # two columns, two names
            tab.get_by_text(evaluate.info.run_name).first.wait_for(timeout=30_000)
        assert tab.get_by_text("scratch.epochs").count() > 0  # among the params that differ
        assert tab.get_by_text("classifier.epochs").count() == 0  # the same for both: hidden
        tab.screenshot(path=SCREENSHOTS / "mlflow-compare.png", full_page=True)

        # the same grid beside the model, in the run that trained it
        scratch = max(
            (r for r in runs if r.data.tags.get("catdog.stage") == "scratch"),
            key=lambda r: r.info.start_time,
        )
        tab.goto(
            f"{mlflow_url}/#/experiments/{experiment_id}/runs/{scratch.info.run_id}/artifacts/"
            f"gradcam/gradcam_scratch.png?{MODEL_TRAINING_VIEW}"
        )
        shown_picture(tab, "img[src^='blob:']")
        close_assistant(tab)
        tab.screenshot(path=SCREENSHOTS / "mlflow-gradcam-artifact.png")

        tab.goto(f"{mlflow_url}/#/experiments/{experiment_id}/models?{MODEL_TRAINING_VIEW}")
        tab.get_by_text("test_accuracy").first.wait_for(timeout=60_000)
        tab.screenshot(path=SCREENSHOTS / "mlflow-models.png", full_page=True)


def check_lineage_registry_and_champion(client, seen: dict, project: Path, env) -> None:
    """Lineage tags on every child run; a registry version per training run; the champion
    moved only when beaten; ``catdog lineage`` names what made it."""
    runs = seen["runs"]
    # artifacts behind the server, whichever store made the experiment
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:/") for r in runs)
    # Lineage on every child run: commit, DVC hashes of its inputs, weights, Prefect flow run.
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    raw_hash = dvc_hash(project / "data/raw")
    manifest_hash = dvc_hash(project / "data/split/manifest.csv")
    child_runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    for child in child_runs:
        tags = child.data.tags
        stage = tags["catdog.stage"]
        assert child.info.status == "FINISHED", stage
        assert tags["git.commit"] == head and tags["git.dirty"] in {"true", "false"}
        assert tags["dvc.data_raw"] == raw_hash, stage
        assert tags["prefect.flow_run_id"], stage
        if stage not in {"ingest", "split"}:
            assert tags["dvc.manifest"] == manifest_hash, stage
            inputs = {(i.dataset.name, i.dataset.digest) for i in child.inputs.dataset_inputs}
            read = "catdog-test-split" if stage == "evaluate" else "catdog-manifest"
            assert (read, manifest_hash[:36]) in inputs, stage  # what it read, by DVC hash
            if stage in REGISTERED:  # and the split its model's test metrics are on
                assert ("catdog-test-split", manifest_hash[:36]) in inputs, stage
        if stage in {"classifier", "finetune", "evaluate"}:
            assert tags["dvc.features"].endswith(".dir"), stage
        if stage in REGISTERED:
            assert tags["weights"] == "untrained" and tags["weights.requested"] == "auto"

    # Registry: a version per training run; the champion moved only when it was beaten.
    for name in REGISTERED.values():
        versions = client.search_model_versions(f"name = '{name}'")
        assert len(versions) == (3 if name == "catdog-scratch" else 1), name
        assert all(v.tags["git.commit"] == head for v in versions)
    decisions = sorted((r for r in seen["evaluates"]), key=lambda r: r.info.start_time)
    outcomes = [r.data.tags["champion.decision"] for r in decisions]
    assert outcomes[0] == "first" and set(outcomes[1:]) <= {"moved", "kept", "unchanged"}
    for earlier, later in itertools.pairwise(decisions):  # never silently worse
        if later.data.tags["champion.decision"] == "kept":
            assert later.data.tags["champion.model"] == earlier.data.tags["champion.model"]
        before = float(later.data.tags["champion.incumbent_accuracy"])
        after = float(later.data.tags["champion.challenger_accuracy"])
        assert (later.data.tags["champion.decision"] == "moved") == (after > before)
    final = decisions[-1].data.tags
    holders = [
        n for n in REGISTERED.values() if "champion" in client.get_registered_model(n).aliases
    ]
    assert holders == [final["champion.model"].rsplit("/", 1)[0]]
    served = client.get_model_version_by_alias("catdog", "champion")
    assert served.tags["catdog.source"] == final["champion.model"]
    assert f"catdog/{served.version}" == final["champion.serving"]
    assert (
        client.get_registered_model("catdog").tags["champion.decision"]
        == (final["champion.decision.text"])
    )

    # catdog lineage names the data, commit and params that made the champion.
    shown = run([str(bin_dir() / "catdog"), "lineage", "catdog@champion", "--json"], project, env)
    lineage = json.loads(shown.stdout)
    assert lineage["run"]["stage"] == final["champion.stage"]
    assert lineage["git"]["commit"] == head and lineage["data"]["data/raw"] == raw_hash
    trained_by = client.get_run(served.tags["catdog.source_run_id"])
    assert lineage["params"] == trained_by.data.params and lineage["params"]
    assert lineage["champion"]["latest"] == final["champion.decision.text"]


def check_served_champion(project: Path, env, port: int, out: Path) -> None:
    """Serve the champion (MLflow's scoring server, which has no auth of its own); real JPEG bytes
    over HTTP give catdog predict's probabilities."""
    files = photos_to_send(project)
    body = {
        "dataframe_split": {
            "columns": ["image"],
            "data": [[base64.b64encode(f.read_bytes()).decode()] for f in files],
        }
    }
    model_server = start_model_server(project, env, port)
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
    finally:
        os.killpg(model_server.pid, signal.SIGTERM)
        model_server.wait(timeout=60)
    assert response.status_code == 200, response.text
    answers = pd.DataFrame(response.json()["predictions"])
    predict = [str(bin_dir() / "catdog"), "predict", *map(str, files)]
    run([*predict, "--model", CHAMPION, "--out", str(out)], project, env)
    expected = pd.read_csv(out)
    assert list(expected["path"]) == [str(f) for f in files]
    np.testing.assert_allclose(answers["prob_dog"], expected["prob_dog"], atol=1e-6)
    assert list(answers["label"]) == list(expected["label"])
    assert (answers["error"] == "").all()


def secret_forms() -> list[bytes]:
    """The secrets as a file or a terminal could hold them: plain, as HTTP sends them (basic
    auth's base64 of ``user:password``, Prefect's of its auth string), base64'd alone, and
    URL-quoted (as in a URI with credentials)."""
    from urllib.parse import quote

    forms = [PASSWORD, AUTH, f"admin:{PASSWORD}"]
    encoded = [base64.b64encode(form.encode()) for form in forms]
    quoted = [quote(form, safe="").encode() for form in (PASSWORD, AUTH)]
    return [form.encode() for form in forms] + encoded + quoted


def holds_a_secret(data: bytes) -> bytes | None:
    return next((form for form in secret_forms() if form in data), None)


def no_file_holds_a_secret(*folders: Path) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert holds_a_secret(path.read_bytes()) is None, path


def a_home_of_its_own(home: Path) -> dict[str, str]:
    """HOME for the clients, so what they keep there (Prefect's home, a team client's
    ``~/.prefect``; DVC's and matplotlib's caches) can be searched; git's identity carried."""
    home.mkdir(parents=True)
    identity = {}
    for key in ("user.name", "user.email"):
        found = subprocess.run(["git", "config", "--global", key], capture_output=True, text=True)
        identity[key] = found.stdout.strip() or "catdog test"
    (home / ".gitconfig").write_text(
        f"[user]\n\tname = {identity['user.name']}\n\temail = {identity['user.email']}\n"
    )
    return {"HOME": str(home)}


def test_servers_behind_credentials_three_executions_uis_registry_and_champion(
    tmp_path, monkeypatch
):
    project = make_project_copy(tmp_path / "catdog")
    mlflow_port, prefect_port, model_port = free_port(), free_port(), free_port()
    home = tmp_path / "home"
    env = project_env({"KERAS_HOME": str(tmp_path / "keras"), **a_home_of_its_own(home)})
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", *CREDENTIALS):
        env.pop(name, None)
    server, banner = start_catdog_serve(
        project, {**env, **CREDENTIALS}, mlflow_port, prefect_port, "--auth"
    )
    try:
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        prefect_url = f"http://127.0.0.1:{prefect_port}"
        prefect_api = f"{prefect_url}/api"
        assert f"export MLFLOW_TRACKING_URI={mlflow_url}" in banner
        assert f"export PREFECT_API_URL={prefect_api}" in banner
        assert "MLFLOW_TRACKING_PASSWORD=..." in banner and PASSWORD not in banner
        refuses_without_credentials(mlflow_url, prefect_api)
        client_env = dict(env, MLFLOW_TRACKING_URI=mlflow_url, PREFECT_API_URL=prefect_api)
        wrong = {**client_env, **CREDENTIALS, "MLFLOW_TRACKING_PASSWORD": "wrong"}
        refused = run([str(bin_dir() / "catdog"), "stage", "ingest"], project, wrong, check=False)
        terminal = [banner, refused.stdout, refused.stderr]
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
            f"catdog: error: MLflow tracking server {mlflow_url} refused the credentials in "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the team's admin has them), "
            "then run this again"
        )
        assert not (project / "data").exists() and not (project / "dvc.lock").exists()
        env = dict(client_env, **CREDENTIALS)

        # Three executions: the whole pipeline, an experiment, a catdog run.
        outputs = [run([str(bin_dir() / "dvc"), "repro"], project, env)]
        exp = [str(bin_dir() / "dvc"), "exp", "run", *SCRATCH_2, "-n", "scratch-2"]
        outputs.append(run(exp, project, env))
        shown = json.dumps(
            json.loads(run([str(bin_dir() / "dvc"), "exp", "show", "--json"], project, env).stdout)
        )
        assert "scratch-2" in shown
        catdog_run = [str(bin_dir() / "catdog"), "run", "-S", "scratch.epochs=3"]
        outputs.append(run(catdog_run, project, env))
        for result in outputs:  # a quiet terminal: no library warning the project can prevent
            text = result.stdout + result.stderr
            assert "UserWarning" not in text and "retracing" not in text
            terminal.append(text)
        no_file_holds_a_secret(project, home)  # while the servers run, too
        assert (home / ".prefect").is_dir()  # a team client's Prefect home, searched above

        from mlflow.tracking import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        client = MlflowClient(mlflow_url)
        experiment = client.get_experiment_by_name("catdog")
        seen = check_mlflow_runs(client, experiment, project)
        runs = seen["runs"]
        scratch_run = check_prefect(prefect_api, runs)
        check_in_a_browser(mlflow_url, prefect_url, experiment.experiment_id, seen, scratch_run)
        check_lineage_registry_and_champion(client, seen, project, env)
        check_served_champion(project, env, model_port, tmp_path / "predict.csv")
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=60)
    assert code == 0
    for port in (mlflow_port, prefect_port, model_port):
        assert port_closed(port), f"port {port} still open"
    no_file_holds_a_secret(project, tmp_path / "keras", home)
    terminal += [server.stdout.read(), server.stderr.read()]
    for text in terminal:  # what every command printed, the servers' too
        assert holds_a_secret(text.encode()) is None, text[-3000:]
