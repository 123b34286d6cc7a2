"""The project's own Prefect server (catdog.servers.prefect): started with Prefect's own commands
under a PREFECT_HOME of the project's, shared by the processes that start at once, stopped by
Prefect."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from catdog.servers.prefect import (
    PrefectServerError,
    ensure_prefect_api,
    prefect_home,
    recorded_api_url,
    stop_prefect_server,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]

FLOW = """
import json, sys
from prefect import flow
from prefect.runtime import flow_run

@flow(name="catdog-smoke")
def smoke():
    return str(flow_run.id)

print(json.dumps({"id": smoke()}))
"""


def _ensure_in_a_process(home: Path) -> subprocess.Popen[str]:
    code = (
        "from pathlib import Path; from catdog.servers.prefect import ensure_prefect_api; "
        f"print(ensure_prefect_api(Path({str(home)!r})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )


def _run_a_flow(home: Path, url: str) -> str:
    env = dict(os.environ, PREFECT_API_URL=url, PREFECT_HOME=str(prefect_home(home)))
    out = subprocess.run(
        [sys.executable, "-c", FLOW], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["id"]


def _server_pid(home: Path) -> int:
    return int((prefect_home(home) / "server.pid").read_text())


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield tmp_path / "project"
    stop_prefect_server(tmp_path / "project")


def test_a_team_server_in_prefect_api_url_is_used_and_nothing_started(home, monkeypatch):
    from catdog.servers import prefect as servers_prefect

    probed = []
    monkeypatch.setattr(servers_prefect, "probe", lambda url: probed.append(url) or "")
    monkeypatch.setenv("PREFECT_API_URL", "http://team.example:4200/api")
    assert ensure_prefect_api(home) == "http://team.example:4200/api"
    assert probed == ["http://team.example:4200/api/health"]  # it must answer, now
    assert not (prefect_home(home) / "server.pid").exists()


def test_a_team_server_that_does_not_answer_is_one_error_and_nothing_started(home, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with pytest.raises(PrefectServerError, match="the Prefect server does not answer"):
        ensure_prefect_api(home)
    assert not (prefect_home(home) / "server.pid").exists()


def test_processes_starting_at_once_share_one_server_with_its_own_history(home):
    starters = [_ensure_in_a_process(home) for _ in range(3)]
    urls = {process.communicate(timeout=300)[0].strip() for process in starters}
    assert len(urls) == 1 and all(p.returncode == 0 for p in starters)
    (url,) = urls
    assert url == recorded_api_url(home)  # in the project's Prefect profile, by `prefect config`
    assert httpx.get(f"{url}/health", timeout=5).json() is True
    # the UI asks the server where its API is: its own address, whatever the port
    settings = httpx.get(f"{url.removesuffix('/api')}/ui-settings", timeout=5).json()
    assert settings["api_url"] == url
    assert (prefect_home(home) / "prefect.db").is_file()  # this project's own database
    # a flow run from another process reaches it and is recorded there
    flow_run_id = _run_a_flow(home, url)
    run = httpx.get(f"{url}/flow_runs/{flow_run_id}", timeout=5).json()
    assert run["state"]["type"] == "COMPLETED"
    server = _server_pid(home)
    assert ensure_prefect_api(home) == url and _server_pid(home) == server  # reused
    # a server too busy to answer for seconds (here: stopped for 6 s) is waited for, not
    # replaced under the flow runs it serves
    busy = psutil.Process(server)
    busy.suspend()
    threading.Timer(6, busy.resume).start()
    assert ensure_prefect_api(home) == url and _server_pid(home) == server


def test_two_checkouts_keep_their_own_run_history(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    try:
        # Started at the same moment, both may find the same port free; each gets its own.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            urls = list(pool.map(ensure_prefect_api, (first, second)))
        assert urls[0] != urls[1]  # a server each, on its own port
        for home, url in ((first, urls[0]), (second, urls[1])):
            port = int(url.removesuffix("/api").rsplit(":", 1)[1])
            server = psutil.Process(_server_pid(home))
            listening = {
                c.laddr.port
                for each in (server, *server.children(recursive=True))
                for c in each.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN
            }
            assert port in listening  # the server answering there is this checkout's own
        ids = [_run_a_flow(first, urls[0]), _run_a_flow(second, urls[1])]
        for url, mine, theirs in ((urls[0], *ids), (urls[1], *reversed(ids))):
            listed = {r["id"] for r in httpx.post(f"{url}/flow_runs/filter", json={}).json()}
            assert listed == {mine} and theirs not in listed
    finally:
        stop_prefect_server(first)
        stop_prefect_server(second)


def test_a_killed_server_is_started_again_and_stop_stops_it(home, monkeypatch):
    from catdog.servers import prefect as servers_prefect

    url = ensure_prefect_api(home)
    server = psutil.Process(_server_pid(home))
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
    # another program takes the port the restart picks, between the look and the start
    with socket.create_server(("127.0.0.1", 0)) as taken:
        held = taken.getsockname()[1]
        ports = [held]
        free = servers_prefect._free_port
        monkeypatch.setattr(servers_prefect, "_free_port", lambda: ports.pop() if ports else free())
        again = ensure_prefect_api(home)  # Prefect's pid file still names the dead one
    assert not ports and f":{held}/" not in again
    assert httpx.get(f"{again}/health", timeout=5).json() is True
    assert _server_pid(home) != server.pid
    # what the server says (a warning, the error it dies of) goes to its log, not to a pipe
    # nobody reads
    output = {f.fd: f.path for f in psutil.Process(_server_pid(home)).open_files() if f.fd < 3}
    assert output == {1: str(prefect_home(home) / "server.log"), 2: output[1]}
    assert stop_prefect_server(home)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{again}/health", timeout=2)
    assert not (prefect_home(home) / "server.pid").exists()
    assert not stop_prefect_server(home)  # nothing left to stop
    assert url.startswith("http://127.0.0.1:")
