"""End-to-end tests for servers.prefect: real Prefect servers in detached processes.

Every test gets its own state directory and stops its server in the fixture, so no
process outlives the tests. PREFECT_HOME is one temporary directory for the module, so that
only the first server pays for creating the database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from servers.prefect import STATE_FILE, ensure_prefect_api, stop_prefect_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0

FLOW_SCRIPT = """
from prefect import flow, task

@task
def add(a, b):
    return a + b

@flow(name="catdog-smoke")
def smoke():
    return add(1, 2)

assert smoke() == 3
print("FLOW-OK")
"""

# Holds the server (hold=True is the default) for a few seconds, then exits.
HOLDER_SCRIPT = """
import sys, time
from pathlib import Path
from servers.prefect import ensure_prefect_api

print(ensure_prefect_api(Path(sys.argv[1]), idle_timeout_s=3), flush=True)
time.sleep(float(sys.argv[2]))
"""


# ----------------------------------------------------------------------------- helpers


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).json() is True
    except (httpx.HTTPError, ValueError):
        return False


def read_state(state_dir: Path) -> dict:
    return json.loads((state_dir / STATE_FILE).read_text())


def alive(pid: int) -> bool:
    """True for a running process (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def supervisors_of(state_dir: Path) -> list[psutil.Process]:
    """Live supervisor processes whose command line names ``state_dir``."""
    found = []
    needle = str(state_dir.resolve())
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "supervise" not in cmdline:
            continue
        if needle in cmdline:
            found.append(proc)
    return found


def wait_until(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture
def state_dir(
    tmp_path: Path, prefect_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    directory = tmp_path / "state"
    try:
        yield directory
    finally:
        stop_prefect_server(directory)
        # Safety net: nothing this test started may survive it.
        for proc in supervisors_of(directory):
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()


# ----------------------------------------------------------------------------- tests


def test_start_reuse_and_run_a_flow(state_dir: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    url = ensure_prefect_api(state_dir, idle_timeout_s=120, start_timeout_s=START_TIMEOUT_S)
    first_s = time.monotonic() - t0

    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    assert httpx.get(f"{url}/health", timeout=5).json() is True
    state = read_state(state_dir)
    assert state["url"] == url
    assert state["port"] == int(url.rsplit(":", 1)[1].removesuffix("/api"))
    assert {"pid", "server_pid", "started_at"} <= state.keys()
    assert alive(state["pid"]) and alive(state["server_pid"])
    assert os.environ.get("PREFECT_API_URL") is None  # the caller sets it, not us

    t1 = time.monotonic()
    again = ensure_prefect_api(state_dir, idle_timeout_s=120)
    reuse_s = time.monotonic() - t1
    assert again == url
    assert reuse_s < 1.0, f"reuse took {reuse_s:.2f} s (first start {first_s:.1f} s)"
    assert read_state(state_dir)["pid"] == state["pid"]

    # A flow run in a fresh process against the shared server.
    result = subprocess.run(
        [sys.executable, "-c", FLOW_SCRIPT],
        env={**os.environ, "PREFECT_API_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FLOW-OK" in result.stdout
    assert "temporary server" not in output
    runs = httpx.post(
        f"{url}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["catdog-smoke"]}}},
        timeout=10,
    ).json()
    assert [run["state_type"] for run in runs] == ["COMPLETED"]


def test_idle_server_stops_itself(state_dir: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(state_dir), "5"],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        state = read_state(state_dir)

        # The lease (3 s) has run out, but the holder is alive: the server stays up.
        time.sleep(4)
        assert holder.poll() is None
        assert healthy(url)

        assert holder.wait(timeout=30) == 0
        exited = time.monotonic()
        assert wait_until(
            lambda: not alive(state["pid"]) and not alive(state["server_pid"]), timeout_s=20
        ), "supervisor or server still running"
        stopped_after_s = time.monotonic() - exited
        assert 2.0 < stopped_after_s < 20.0
        assert not (state_dir / STATE_FILE).exists()
        assert not healthy(url)
        assert "idle for" in (state_dir / "prefect-server.log").read_text()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_stale_state_file_is_replaced(state_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    port = free_port()
    stale_url = f"http://127.0.0.1:{port}/api"
    state_dir.mkdir(parents=True)
    (state_dir / STATE_FILE).write_text(
        json.dumps(
            {
                "url": stale_url,
                "pid": dead.pid,
                "server_pid": dead.pid,
                "port": port,
                "started_at": "2020-01-01T00:00:00+00:00",
            }
        )
    )

    url = ensure_prefect_api(state_dir, idle_timeout_s=60, start_timeout_s=START_TIMEOUT_S)

    assert url != stale_url
    assert healthy(url)
    state = read_state(state_dir)
    assert state["url"] == url
    assert state["pid"] != dead.pid and alive(state["pid"])


def test_prefect_api_url_from_environment_is_used(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")

    assert ensure_prefect_api(state_dir) == "http://prefect.example:4200/api"
    assert not state_dir.exists()
    assert supervisors_of(state_dir) == []
    assert stop_prefect_server(state_dir) is False


def test_concurrent_callers_share_one_server(state_dir: Path) -> None:
    cmd = [sys.executable, "-m", "servers.prefect", "ensure", "--state-dir", str(state_dir)]
    cmd += ["--idle-timeout", "60", "--start-timeout", str(START_TIMEOUT_S)]
    # capture_output-style pipes: communicate() only returns if the detached supervisor
    # did not inherit them.
    callers = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [caller.communicate(timeout=START_TIMEOUT_S + 30) for caller in callers]

    for caller, (_out, err) in zip(callers, outputs, strict=True):
        assert caller.returncode == 0, err
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1, urls
    url = urls.pop()
    assert healthy(url)
    assert [p.pid for p in supervisors_of(state_dir)] == [read_state(state_dir)["pid"]]


def test_stop_prefect_server(state_dir: Path) -> None:
    url = ensure_prefect_api(state_dir, idle_timeout_s=60, start_timeout_s=START_TIMEOUT_S)
    state = read_state(state_dir)

    assert stop_prefect_server(state_dir) is True

    assert not alive(state["pid"]) and not alive(state["server_pid"])
    assert not (state_dir / STATE_FILE).exists()
    assert not healthy(url)
    assert stop_prefect_server(state_dir) is False


def test_start_timeout_raises_and_leaves_nothing_running(state_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="PREFECT_API_URL") as excinfo:
        ensure_prefect_api(state_dir, start_timeout_s=0.5)

    assert "did not become healthy within" in str(excinfo.value)
    assert "prefect-server.log" in str(excinfo.value)
    assert wait_until(lambda: supervisors_of(state_dir) == [], timeout_s=5)
    assert not (state_dir / STATE_FILE).exists()
