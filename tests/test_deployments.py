"""The pipeline as Prefect deployments, end to end against real servers: `catdog serve --worker`
(MLflow, Prefect and a process worker), `catdog deploy` twice, runs started with `prefect
deployment run` and from the *Custom run* form in a real browser, each landing in params.yaml,
dvc.lock and MLflow; impossible values refused before a run; two triggers at once run one after
the other; and a worker in another clone with its own environment that clones, `dvc pull`s, runs
and pushes its results back for the first clone to `dvc pull`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from catdog.params import flat_params
from catdog.stage_table import STAGE_NAMES
from tests.conftest import (
    REPO,
    SCREENSHOTS,
    bin_dir,
    chromium,
    free_port,
    lock_outs,
    make_project_copy,
    project_env,
    run,
)
from tests.test_platform import start_catdog_serve

pytestmark = pytest.mark.e2e

PIPELINE = "catdog-pipeline/pipeline"
FROM_GIT = "catdog-pipeline/pipeline-from-git"
CATDOG = str(bin_dir() / "catdog")
PREFECT = str(bin_dir() / "prefect")
DVC = str(bin_dir() / "dvc")
#: Fields Prefect stamps on every write, whatever changed.
TIMESTAMPS = {"created", "updated", "last_polled", "status", "updated_by", "created_by"}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "worker",
    "GIT_AUTHOR_EMAIL": "worker@example.com",
    "GIT_COMMITTER_NAME": "worker",
    "GIT_COMMITTER_EMAIL": "worker@example.com",
}


@contextlib.contextmanager
def prefect_client(api_url: str) -> Iterator[object]:
    """Prefect's own client on the server at ``api_url``."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def without_timestamps(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items() if k not in TIMESTAMPS}
    if isinstance(value, list):
        return [without_timestamps(v) for v in value]
    return value


def snapshot(api_url: str) -> dict[str, object]:
    """The work pool and the pipeline deployment as the server holds them."""
    with prefect_client(api_url) as client:
        deployment = client.read_deployment_by_name(PIPELINE).model_dump(mode="json")
        pool = client.read_work_pool("catdog").model_dump(mode="json")
    return without_timestamps({"deployment": deployment, "pool": pool})  # type: ignore[return-value]


def flow_run_id(output: str) -> str:
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)  # type: ignore[union-attr]


def deployment_run(env: dict[str, str], cwd: Path, name: str, *params: str, watch: bool = True):
    command = [PREFECT, "deployment", "run", name]
    for param in params:
        command += ["--param", param]
    if watch:
        command += ["--watch", "--watch-timeout", "600"]
    return run(command, cwd, env, timeout=700, check=False)


def params_now(project: Path) -> dict[str, object]:
    return flat_params(yaml.safe_load((project / "params.yaml").read_text()))


def mlflow_children(tracking_uri: str, flow_run: str) -> tuple[object, list[object]]:
    """The MLflow parent run of a pipeline flow run, and its child runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("catdog")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    (parent,) = [r for r in runs if r.data.tags.get("prefect.flow_run_url", "").endswith(flow_run)]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A project copy with `catdog serve --worker` running for it: (project, client env)."""
    root = tmp_path_factory.mktemp("deployments")
    project = make_project_copy(root / "catdog")
    mlflow_port, prefect_port = free_port(), free_port()
    env = project_env(
        {
            "KERAS_HOME": str(root / "keras-home"),
            "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1",  # tiny stages last seconds
            **GIT_IDENTITY,
        }
    )
    env.pop("PREFECT_API_URL", None)
    server, banner = start_catdog_serve(project, env, mlflow_port, prefect_port, "--worker")
    assert "Prefect worker (pool catdog)" in banner, banner
    client_env = {
        **env,
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
    }
    try:
        yield project, client_env
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def deployed(served: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str], str]:
    """The served project after one `catdog deploy`: (project, env, what it printed)."""
    project, env = served
    result = run([CATDOG, "deploy"], project, env, timeout=300)
    return project, env, result.stdout


def test_catdog_deploy_registers_the_pipeline_and_again_changes_nothing(deployed):
    project, env, said = deployed
    assert "work pool 'catdog': exists" in said  # the worker made it; else: created (process)
    assert "pipeline: deployed (flows/pipeline.py:pipeline_flow, work pool catdog)" in said
    assert "pipeline-from-git: not deployed" in said and "git remote add origin" in said
    before = snapshot(env["PREFECT_API_URL"])
    again = run([CATDOG, "deploy"], project, env, timeout=300)
    assert again.stdout == said
    assert snapshot(env["PREFECT_API_URL"]) == before

    pool, deployment = before["pool"], before["deployment"]
    assert pool["type"] == "process"
    assert deployment["work_pool_name"] == "catdog"
    # the form's defaults are params.yaml's values, which are not the code's defaults here
    written = flat_params(yaml.safe_load((project / "params.yaml").read_text()))
    assert flat_params(deployment["parameters"]) == written
    assert written["data.synthetic.per_class"] == 12
    schema = deployment["parameter_openapi_schema"]
    epochs = schema["definitions"]["ClassifierParams"]["properties"]["epochs"]
    assert epochs["minimum"] == 1 and epochs["description"] == "passes over the training images"
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    (schedule,) = deployment["schedules"]
    assert schedule["active"] is False and schedule["schedule"]["cron"] == "0 3 * * 1"
    (pull,) = deployment["pull_steps"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == str(project)

    # a schedule switched on in the UI: prefect.yaml says what it is at the next deploy
    with prefect_client(env["PREFECT_API_URL"]) as client:
        client.update_deployment_schedule(deployment["id"], schedule["id"], active=True)
    assert snapshot(env["PREFECT_API_URL"])["deployment"]["schedules"][0]["active"] is True
    run([CATDOG, "deploy"], project, env, timeout=300)
    assert snapshot(env["PREFECT_API_URL"]) == before


def test_a_deployed_run_with_a_param_lands_in_params_yaml_dvc_lock_and_mlflow(deployed):
    project, env, _ = deployed
    before = params_now(project)
    result = deployment_run(env, project, PIPELINE, 'classifier={"epochs": 3}')
    assert "Flow run finished successfully in 'Completed'" in result.stdout, result.stdout[-3000:]
    changed = {k for k, v in params_now(project).items() if before[k] != v}
    assert changed == {"classifier.epochs"}  # the key given; the rest keep params.yaml's values
    assert params_now(project)["classifier.epochs"] == 3
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["classifier"]["params"]["params.yaml"]["classifier"]["epochs"] == 3
    assert set(lock_outs(project)) == set(STAGE_NAMES)
    assert json.loads(run([DVC, "status", "--json"], project, env).stdout) == {}

    flow_run = flow_run_id(result.stdout)
    parent, children = mlflow_children(env["MLFLOW_TRACKING_URI"], flow_run)
    assert parent.data.tags["catdog.trigger"] == "prefect deployment"
    assert parent.data.tags["prefect.deployment"] == "pipeline"
    assert parent.info.run_name.startswith("prefect deployment pipeline ")
    assert sorted(c.data.tags["catdog.stage"] for c in children) == sorted(STAGE_NAMES)
    for child in children:
        assert child.data.tags["catdog.trigger"] == "prefect deployment"
        assert child.data.tags["prefect.deployment"] == "pipeline"
        assert child.data.tags["prefect.flow_run_url"].startswith("http://127.0.0.1:")
    scratch = next(c for c in children if c.data.tags["catdog.stage"] == "scratch")
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        scratch.data.metrics
    )

    with prefect_client(env["PREFECT_API_URL"]) as client:
        pipeline_run = client.read_flow_run(flow_run)
        deployment = client.read_deployment_by_name(PIPELINE)
    assert pipeline_run.deployment_id == deployment.id
    assert pipeline_run.name == f"pipeline · {parent.info.run_name}"  # one name in both UIs


def test_an_impossible_value_is_refused_before_a_run(deployed):
    project, env, _ = deployed
    with prefect_client(env["PREFECT_API_URL"]) as client:
        runs_before = len(client.read_flow_runs())
    before = (project / "params.yaml").read_bytes()
    refused = deployment_run(env, project, PIPELINE, 'classifier={"epochs": 0}', watch=False)
    said = refused.stdout + refused.stderr
    assert "Validation failed for field 'classifier.epochs'" in said, said
    assert "0 is less than the minimum of 1" in said
    with prefect_client(env["PREFECT_API_URL"]) as client:
        assert len(client.read_flow_runs()) == runs_before  # no run was created

    # a rule across fields (the split's fractions sum to 1): the run fails as it starts
    failed = deployment_run(env, project, PIPELINE, 'split={"train": 0.9}')
    assert "Flow run finished in state 'Failed'" in failed.stdout, failed.stdout[-3000:]
    with prefect_client(env["PREFECT_API_URL"]) as client:
        state = client.read_flow_run(flow_run_id(failed.stdout)).state
    assert "train + validation + test must sum to 1" in state.message
    assert (project / "params.yaml").read_bytes() == before


def test_a_missing_data_source_fails_the_run_in_one_line_and_changes_nothing(deployed):
    project, env, _ = deployed
    before = (project / "params.yaml").read_bytes(), (project / "dvc.lock").read_bytes()
    result = deployment_run(env, project, PIPELINE, 'data={"source": "/nowhere/photos.zip"}')
    assert "Flow run finished in state 'Failed'" in result.stdout, result.stdout[-3000:]
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    flow_run = flow_run_id(result.stdout)
    with prefect_client(env["PREFECT_API_URL"]) as client:
        state = client.read_flow_run(flow_run).state
        logs = [
            log.message
            for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run])))
        ]
    expected = "data.source: /nowhere/photos.zip does not exist; give a folder of cat.N.jpg"
    assert state.message.startswith(expected) and "\n" not in state.message
    assert any(line.startswith(f"catdog: error: {expected}") for line in logs), logs
    assert ((project / "params.yaml").read_bytes(), (project / "dvc.lock").read_bytes()) == before


def test_two_triggers_at_once_run_one_after_the_other_and_dvc_repro_waits_its_turn(deployed):
    project, env, _ = deployed
    first = deployment_run(env, project, PIPELINE, 'classifier={"epochs": 4}', watch=False)
    second = deployment_run(env, project, PIPELINE, 'classifier={"epochs": 5}', watch=False)
    ids = [flow_run_id(first.stdout), flow_run_id(second.stdout)]
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    stages_of = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=ids))
    refused = None
    deadline = time.monotonic() + 600
    with prefect_client(env["PREFECT_API_URL"]) as client:
        while time.monotonic() < deadline:
            runs = [client.read_flow_run(i) for i in ids]
            # once a stage runs, the run holds the workspace and DVC's lock: dvc repro now
            if refused is None and client.read_flow_runs(flow_run_filter=stages_of):
                refused = run([DVC, "repro"], project, env, check=False)
            if all(r.state.is_final() for r in runs):
                break
            time.sleep(1)
    states = [r.state.type.value for r in runs]
    assert states == ["COMPLETED", "COMPLETED"], [r.state.message for r in runs]
    earlier, later = sorted(runs, key=lambda r: r.start_time)
    assert earlier.end_time <= later.start_time  # never both at once
    assert refused is not None and refused.returncode != 0
    said = refused.stderr + refused.stdout  # DVC's repository lock, held by the run
    assert "Unable to acquire lock" in said or "another pipeline run is in progress" in said, said
    last_epochs = later.parameters["classifier"]["epochs"]
    assert params_now(project)["classifier.epochs"] == last_epochs
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["classifier"]["params"]["params.yaml"]["classifier"]["epochs"] == (
        last_epochs
    )
    assert json.loads(run([DVC, "status", "--json"], project, env).stdout) == {}


def test_a_run_with_the_form_as_deployed_keeps_params_yaml_as_it_is(deployed):
    project, env, _ = deployed
    deployed_epochs = snapshot(env["PREFECT_API_URL"])["deployment"]["parameters"]["classifier"]
    assert params_now(project)["classifier.epochs"] != deployed_epochs["epochs"]  # changed since
    before = (project / "params.yaml").read_bytes(), (project / "dvc.lock").read_bytes()
    result = deployment_run(env, project, PIPELINE)  # Quick run: the deployment's parameters
    assert "Flow run finished successfully in 'Completed'" in result.stdout, result.stdout[-3000:]
    assert ((project / "params.yaml").read_bytes(), (project / "dvc.lock").read_bytes()) == before


# The nearest enclosing field of Prefect's schema form (its header's class shares the prefix).
FIELD = "xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')][1]"  # noqa: E501


def test_custom_run_from_the_form_in_prefect_ui(deployed):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    project, env, _ = deployed
    run([CATDOG, "deploy"], project, env, timeout=300)  # the form's defaults: params.yaml now
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    with prefect_client(env["PREFECT_API_URL"]) as client:
        deployment = client.read_deployment_by_name(PIPELINE)
    by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    with chromium() as browser:
        tab = browser.new_page()
        tab.goto(f"{ui}/deployments/deployment/{deployment.id}")
        run_button = tab.get_by_role("button", name="Run", exact=True)
        run_button.wait_for(timeout=60_000)
        run_button.click()
        tab.get_by_text("Custom run", exact=True).click()
        section = tab.get_by_text("classifier (Optional)", exact=True).locator(FIELD)
        epochs = section.get_by_text("Epochs (Optional)", exact=True).locator(FIELD)
        field = epochs.locator("input")
        field.wait_for(timeout=60_000)
        assert field.input_value() == str(params_now(project)["classifier.epochs"])
        field.fill("0")  # refused by the server, before any run
        tab.get_by_role("button", name="Submit").click()
        tab.get_by_text("0 is less than the minimum of 1").first.wait_for(timeout=30_000)
        section.scroll_into_view_if_needed()
        tab.screenshot(path=SCREENSHOTS / "prefect-custom-run-refused.png")
        field.fill("6")
        tab.screenshot(path=SCREENSHOTS / "prefect-custom-run-form.png")
        with prefect_client(env["PREFECT_API_URL"]) as client:
            before = {r.id for r in client.read_flow_runs(deployment_filter=by_deployment)}
            tab.get_by_role("button", name="Submit").click()
            deadline = time.monotonic() + 180  # the UI creates the run; a busy server is slow
            while time.monotonic() < deadline:
                created = client.read_flow_runs(deployment_filter=by_deployment)
                if new := [r for r in created if r.id not in before]:
                    break
                time.sleep(2)
            else:
                tab.screenshot(path=SCREENSHOTS / "prefect-custom-run-not-submitted.png")
                page = tab.inner_text("body")
                raise AssertionError(f"no flow run after Submit; the page: {page}")
            (flow_run,) = new
            deadline = time.monotonic() + 600
            while not flow_run.state.is_final() and time.monotonic() < deadline:
                time.sleep(2)
                flow_run = client.read_flow_run(flow_run.id)
        assert flow_run.state.is_completed(), flow_run.state
        tab.goto(f"{ui}/runs/flow-run/{flow_run.id}")
        tab.get_by_text("Completed").first.wait_for(timeout=60_000)
        tab.get_by_text("classifier: ran").first.wait_for(timeout=60_000)  # the run's log
        tab.screenshot(path=SCREENSHOTS / "prefect-custom-run-completed.png")
    assert flow_run.parameters["classifier"]["epochs"] == 6
    assert params_now(project)["classifier.epochs"] == 6
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["classifier"]["params"]["params.yaml"]["classifier"]["epochs"] == 6


def _commit_all(project: Path, env: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", message], project, env)


def test_a_worker_in_another_clone_pulls_runs_and_pushes_back(
    tmp_path: Path, e2e_env: dict[str, str]
):
    env = {**e2e_env, **GIT_IDENTITY, "MLFLOW_TRACKING_URI": ""}
    # the team's git server and DVC remote: a bare repository and a folder
    origin, remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    first = make_project_copy(tmp_path / "first")
    shutil.copytree(REPO / "scripts", first / "scripts")  # what a clone needs to set up its
    for name in ("uv.lock", "README.md"):  # own environment
        shutil.copy2(REPO / name, first / name)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{first / 'mlflow.db'}"  # a shared filesystem
    run([DVC, "remote", "add", "-d", "team", str(remote)], first, env)
    _commit_all(first, env, "the project, its DVC remote")
    run(["git", "remote", "add", "origin", str(origin)], first, env)
    run(["git", "push", "-q", "-u", "origin", "HEAD"], first, env)
    run([CATDOG, "run"], first, env)
    run([DVC, "push"], first, env)
    _commit_all(first, env, "outputs")
    run(["git", "push", "-q"], first, env)
    said = run([CATDOG, "deploy"], first, env).stdout
    assert "pipeline-from-git: deployed" in said, said

    # another machine: its own clone, its own environment, a worker started there
    second = tmp_path / "second"
    run(["git", "clone", "-q", str(origin), str(second)], tmp_path, env)
    setup_env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}  # registries reachable
    run(["bash", "scripts/setup.sh"], second, setup_env, timeout=900)
    own_bin = second / ".venv" / "bin"
    worker_env = {**env, "PATH": f"{own_bin}{os.pathsep}{env['PATH']}"}
    worker_env.pop("VIRTUAL_ENV", None)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(own_bin / "prefect"), "worker", "start", "--pool", "catdog"],
        cwd=second,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        result = deployment_run(env, first, FROM_GIT, 'classifier={"epochs": 3}')
    finally:
        os.killpg(worker.pid, signal.SIGINT)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "Flow run finished successfully in 'Completed'" in result.stdout, worker_log[-4000:]
    assert "git: pushed" in worker_log, worker_log[-4000:]

    # the first clone takes the worker's record and outputs: clean, and what it ran
    run(["git", "pull", "-q"], first, env)
    assert params_now(first)["classifier.epochs"] == 3
    run([DVC, "pull"], first, env)
    assert json.loads(run([DVC, "status", "--json"], first, env).stdout) == {}
    parent, children = mlflow_children(env["MLFLOW_TRACKING_URI"], flow_run_id(result.stdout))
    assert parent.data.tags["prefect.deployment"] == "pipeline-from-git"
    assert parent.data.tags["catdog.workspace"] != str(first)  # the worker's own clone
    ran = sorted(c.data.tags["catdog.stage"] for c in children)
    assert ran == ["classifier", "evaluate", "finetune"]  # the rest came from the DVC remote
