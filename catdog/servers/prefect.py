"""The project's own Prefect server, run with Prefect's own commands.

Unless ``PREFECT_API_URL`` names a server (a team's, or ``catdog serve``'s), every command that
runs flows uses a server of the project's own, under ``PREFECT_HOME=<project>/.catdog/prefect``:
its database, and so its run history, belong to this checkout. It is started on first use with
``prefect config set`` (the API and UI addresses, in that home's profile) and ``prefect server
start``, keeps running for the UI after the pipeline, and stops with ``prefect server stop``
(``catdog prefect-server stop``).

What Prefect's commands leave to us: choosing a free port (4200 when it is free), letting one
process start the server when several stages start at once (a lock file), keeping the server out
of the terminal's process group (Ctrl-C on a run must not stop it), and removing a pid file left
by a server that was killed. We also detach the server ourselves rather than with ``prefect
server start --background``: that one gives the server pipes for its output that nobody reads
once the command returns, so whatever the server says (a warning, the error it dies of) is lost.
Ours writes everything to ``server.log`` in its home, and writes the pid file ``prefect server
stop`` reads, in Prefect's format.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psutil

from catdog.errors import CatdogError
from catdog.servers.health import is_healthy, probe
from catdog.workspace.paths import state_dir

__all__ = [
    "DEFAULT_PORT",
    "PrefectServerError",
    "ensure_prefect_api",
    "free_loopback_port",
    "log_tail",
    "prefect_home",
    "recorded_api_url",
    "stop_prefect_server",
]

DEFAULT_PORT = 4200
HOST = "127.0.0.1"
START_TIMEOUT_S = 120
START_ATTEMPTS = 3  # ports tried, when another server takes the free one first
_PID_FILE = "server.pid"  # Prefect's own name for it (prefect.cli._server_utils)
_LOG_FILE = "server.log"  # the server's output, and that of the commands that manage it


class PrefectServerError(CatdogError):
    """The project's Prefect server could not be started."""


def prefect_home(home: Path) -> Path:
    """``PREFECT_HOME`` of the project's own server: ``<home>/.catdog/prefect``."""
    path = state_dir(home) / "prefect"
    path.mkdir(exist_ok=True)
    return path


def _prefect_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update(PREFECT_HOME=str(prefect_home(home)), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def recorded_api_url(home: Path) -> str:
    """The API address in the project's Prefect profile ('' before the server first started)."""
    try:
        profiles = tomllib.loads((prefect_home(home) / "profiles.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    active = profiles.get("profiles", {}).get(profiles.get("active", ""), {})
    return str(active.get("PREFECT_API_URL", ""))


def _bound_port(port: int) -> int | None:
    """The port a socket could bind on the loopback interface (0: any free one), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return None
        return int(probe.getsockname()[1])


def free_loopback_port() -> int:
    """A port nobody listens on at the loopback interface now."""
    port = _bound_port(0)
    if port is None:
        raise PrefectServerError(f"no free port on {HOST}")
    return port


def _free_port() -> int:
    """4200 if it is free, else any free port of the loopback interface."""
    port = _bound_port(DEFAULT_PORT) or _bound_port(0)
    if port is None:
        raise PrefectServerError(f"no free port on {HOST} for the project's Prefect server")
    return port


@contextlib.contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """One process at a time checks or starts the server (the kernel drops a dead one's lock)."""
    fd = os.open(prefect_home(home) / "start.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _server_process(home: Path) -> psutil.Process | None:
    """The process Prefect's pid file names, if it is alive and is a Prefect server."""
    try:
        process = psutil.Process(int((prefect_home(home) / _PID_FILE).read_text().strip()))
        words = " ".join(process.cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    server = "prefect server start" in words or "prefect.server" in words  # or --background's
    return process if server and process.is_running() else None


def log_tail(home: Path, lines: int = 5) -> str:
    """Where the server's log is, and its last ``lines`` lines: for an error message."""
    log = prefect_home(home) / _LOG_FILE
    with contextlib.suppress(OSError):
        return f"see {log}: " + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return f"see {log}"


def _prefect(home: Path, *args: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Run ``prefect ARGS`` in the project's Prefect home; its output goes to the log."""
    with (prefect_home(home) / _LOG_FILE).open("ab") as out:
        result = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=_prefect_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            timeout=timeout_s,
            check=False,
        )
    if result.returncode != 0:
        raise PrefectServerError(
            f"`prefect {' '.join(args)}` failed (exit {result.returncode}); {log_tail(home)}"
        )


def _stop(home: Path, server: psutil.Process) -> None:
    """``prefect server stop``, then wait for the server to end (killed if it has not in 30 s),
    so that its port and database are free when this returns."""
    _prefect(home, "server", "stop")
    try:
        server.wait(timeout=30)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):  # it may end between the two
            server.kill()
            server.wait(timeout=30)
    except psutil.Error:
        pass  # already gone


def _listening_ports(process: psutil.Process) -> set[int]:
    """The TCP ports ``process`` or one of its children listens on."""
    ports: set[int] = set()
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            ports |= {
                c.laddr.port for c in each.net_connections("tcp") if c.status == psutil.CONN_LISTEN
            }
    return ports


def _answers_for(home: Path, url: str, timeout_s: float = 2.0) -> bool:
    """True if the server answering at ``url`` is this project's: the process its pid file names
    listens on that port. Another project's server may hold the port, if it took it first."""
    server = _server_process(home)
    port = int(url.removesuffix("/api").rsplit(":", 1)[1])
    return (
        server is not None
        and port in _listening_ports(server)
        and is_healthy(f"{url}/health", timeout_s)
    )


def _spawn(home: Path, port: int) -> subprocess.Popen[bytes]:
    """``prefect server start`` on ``port``, in a session of its own, its output in the log."""
    command = [sys.executable, "-m", "prefect", "server", "start"]
    command += ["--host", HOST, "--port", str(port)]
    with (prefect_home(home) / _LOG_FILE).open("ab") as out:
        server = subprocess.Popen(
            command,
            env=_prefect_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by Ctrl-C on a run, nor with its process group
        )
    (prefect_home(home) / _PID_FILE).write_text(str(server.pid))  # for `prefect server stop`
    return server


def _wait_until_up(home: Path, server: subprocess.Popen[bytes], url: str) -> bool:
    """Wait until the server answers at ``url`` (True) or its process ends (False).

    Raises:
        PrefectServerError: It neither answered nor ended within ``START_TIMEOUT_S``.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while server.poll() is None:
        if _answers_for(home, url):
            return True
        if time.monotonic() > deadline:
            _stop(home, psutil.Process(server.pid))
            raise PrefectServerError(
                f"the project's Prefect server did not answer at {url} within "
                f"{START_TIMEOUT_S} s; {log_tail(home)}"
            )
        time.sleep(0.5)
    (prefect_home(home) / _PID_FILE).unlink(missing_ok=True)
    return False


def _start(home: Path) -> str:
    """Start the project's server with Prefect's commands and wait until it answers.

    Two projects starting their servers at the same moment can both find a port free; the one
    that binds it second fails (Prefect refuses the port as in use), while the other one answers
    there. So the port is checked to be this project's server's, and another is tried if it is
    taken.
    """
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        url = f"http://{HOST}:{port}/api"
        _prefect(home, "config", "set", f"PREFECT_API_URL={url}", f"PREFECT_UI_API_URL={url}")
        server = _spawn(home, port)
        if _wait_until_up(home, server, url):
            return url
        if _bound_port(port) is not None:  # not the race for the port: Prefect's own failure
            raise PrefectServerError(
                f"`prefect server start` ended (exit {server.returncode}) before it answered; "
                f"{log_tail(home)}"
            )
    raise PrefectServerError(
        f"the project's Prefect server found no port of its own on {HOST} after "
        f"{START_ATTEMPTS} tries; see {prefect_home(home) / _LOG_FILE}"
    )


def ensure_prefect_api(home: Path) -> str:
    """The Prefect API to use: ``PREFECT_API_URL`` if set, else the project's own server's.

    The project's server is started if it is not answering. Call this, and set
    ``PREFECT_API_URL`` (and ``PREFECT_HOME``) to what it returns, before importing ``prefect``:
    Prefect reads its settings when it is imported.

    Raises:
        PrefectServerError: The server did not start (the message names its log), or the one
            ``PREFECT_API_URL`` names does not answer.
    """
    team = os.environ.get("PREFECT_API_URL", "")
    if team:  # a team's server: it must answer now, not after minutes of Prefect's retries
        reason = probe(f"{team.rstrip('/')}/health")
        if reason:
            raise PrefectServerError(
                f"PREFECT_API_URL={team}: the Prefect server does not answer ({reason}); start "
                "it (catdog serve) or unset PREFECT_API_URL to use the project's own server"
            )
        return team
    url = recorded_api_url(home)
    if url and _answers_for(home, url):
        return url
    with _start_lock(home):
        url = recorded_api_url(home)
        # started by another process meanwhile, or busy: a loaded machine can keep a live server
        # from answering within seconds, and stopping it would fail the flow runs it serves
        if url and _answers_for(home, url, START_TIMEOUT_S):
            return url
        server = _server_process(home)
        if server is not None:  # running but not answering: start afresh
            _stop(home, server)
        return _start(home)


def stop_prefect_server(home: Path) -> bool:
    """Stop the project's server (``prefect server stop``); False if none was running."""
    with _start_lock(home):
        server = _server_process(home)
        if server is None:
            (prefect_home(home) / _PID_FILE).unlink(missing_ok=True)
            return False
        _stop(home, server)
        return True
