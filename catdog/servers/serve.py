"""``catdog serve``: an MLflow tracking server and a Prefect server for a team.

Both run as child processes with their logs in ``.catdog/``: MLflow on the project's store with
its artifacts served through the server (``mlflow-artifacts:``), Prefect under the project's
Prefect home (its UI told its own address, whatever the port). The command waits until both answer
their health checks, prints their URLs and the variables that point the pipeline at them, and
stops both on Ctrl-C. A server that dies is named with why and restarted; the other keeps
serving meanwhile.

On loopback both are open, as on a laptop. On any other host, or with ``--auth``, both require
credentials (:mod:`servers.auth`): MLflow's ``basic-auth`` app and Prefect's API auth string; and
MLflow lets in only the hosts and browser origins named.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from catdog.io import write_text
from catdog.servers.auth import (
    MLFLOW_PASSWORD,
    MLFLOW_USER,
    PREFECT_AUTH,
    AuthError,
    ServerCredentials,
    read_credentials,
)
from catdog.servers.health import is_healthy
from catdog.servers.prefect import prefect_home, stop_prefect_server
from catdog.workspace.paths import MLFLOW_ARTIFACTS, MLFLOW_DB, local_tracking_uri, state_dir

__all__ = ["AUTH_CACHE_TTL_S", "LOOPBACK", "ServeOptions", "Service", "auth_config", "serve"]

STOP_GRACE_S = 15.0
#: A server that dies again within this long after (re)starting is not restarted.
CRASH_LOOP_S = 30.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# MLflow's basic-auth app checks the password's scrypt hash on every request unless its cache of
# successful checks is on (its own `auth_cache_ttl_seconds`, off by default); the cache keeps a
# keyed digest, never the password. A password changed through MLflow's API is dropped from the
# cache of the worker that changed it at once, from the others' within this many seconds.
AUTH_CACHE_TTL_S = 60


@dataclass
class Service:
    """One server process and how to tell it is up."""

    name: str
    command: list[str]
    health_url: str
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a secret
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, append: bool = False) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab" if append else "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def exit_reason(self) -> str:
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return "still running"
        if code < 0:
            return f"pid {self.process.pid} killed by {signal.Signals(-code).name}"
        return f"pid {self.process.pid} exited with code {code}"

    def stop(self) -> None:
        if self.process is None:
            return
        if not self.alive():  # its workers may outlive it, holding the port
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ServeOptions:
    """How ``catdog serve`` runs the two servers."""

    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    prefect_port: int = 4200
    auth: bool = False  # credentials on loopback too
    credentials_file: Path | None = None
    allowed_hosts: str = ""  # MLflow's Host-header allow-list ('' : this host's names)
    cors_origins: str = ""  # MLflow's CORS allow-list ('' : MLflow's default, localhost)
    advertise: str = ""  # the name clients use for this host ('' : host, or the hostname)
    worker_pool: str = ""  # a Prefect worker for this work pool beside the servers ('' : none)

    @property
    def public_host(self) -> str:
        if self.advertise:
            return self.advertise
        return socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host

    @property
    def needs_auth(self) -> bool:
        return self.auth or self.host not in LOOPBACK


def _credentials(options: ServeOptions) -> ServerCredentials | None:
    """The credentials the servers require, or None on open loopback; fail if they are missing."""
    if not options.needs_auth:
        return None
    credentials = read_credentials(options.credentials_file)
    if credentials is None:
        where = "--auth" if options.host in LOOPBACK else f"--host {options.host}"
        raise AuthError(
            f"catdog serve {where} requires credentials: set {MLFLOW_USER} and {MLFLOW_PASSWORD} "
            f"(the MLflow admin account) and {PREFECT_AUTH} (Prefect's API auth string), or "
            "give --credentials FILE kept outside the repository; nothing was started"
        )
    return credentials


def _mlflow_service(home: Path, options: ServeOptions, creds: ServerCredentials | None) -> Service:
    host, port = options.host, options.mlflow_port
    command = [sys.executable, "-m", "mlflow", "server"]
    command += ["--backend-store-uri", local_tracking_uri(home)]
    command += ["--artifacts-destination", str(home / MLFLOW_ARTIFACTS), "--serve-artifacts"]
    command += ["--host", host, "--port", str(port)]
    names = (options.public_host, host, "localhost", "127.0.0.1")  # and this machine itself
    allowed = options.allowed_hosts or ",".join(
        dict.fromkeys(f"{name}:{port}" for name in names if name not in ("0.0.0.0", "::"))
    )
    command += ["--allowed-hosts", allowed]
    if options.cors_origins:
        command += ["--cors-allowed-origins", options.cors_origins]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    if creds is not None:
        command += ["--app-name", "basic-auth"]
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(auth_config(home, creds.mlflow_user)),
            MLFLOW_AUTH_ADMIN_PASSWORD=creds.mlflow_password,  # the environment, not a file
        )
        # the auth app's CSRF protection signs with it: one per server start unless given
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    url = f"http://{options.public_host}:{port}"
    return Service(
        "MLflow tracking server",
        command,
        f"http://127.0.0.1:{port}/health" if host != "::" else f"http://[::1]:{port}/health",
        url,
        state_dir(home) / "serve-mlflow.log",
        env,
    )


def auth_config(home: Path, admin: str, cache_ttl_s: int = AUTH_CACHE_TTL_S) -> Path:
    """MLflow's basic-auth settings: its user store in .catdog/, no password (that is env), and
    how long a successful password check is remembered (0: never)."""
    path = state_dir(home) / "mlflow-auth.ini"
    write_text(
        path,
        "[mlflow]\n"
        "default_permission = EDIT\n"  # the team's accounts may log runs and register models
        f"database_uri = sqlite:///{state_dir(home) / 'mlflow-auth.db'}\n"
        f"admin_username = {admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_ttl_s}\n",
    )
    return path


def _prefect_service(home: Path, options: ServeOptions, creds: ServerCredentials | None) -> Service:
    port = options.prefect_port
    url = f"http://{options.public_host}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update(
        PREFECT_HOME=str(prefect_home(home)),  # the project's own run history
        PREFECT_UI_API_URL=f"{url}/api",  # the UI finds its API on this port, not 4200
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    if creds is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = creds.prefect_auth
    command = [sys.executable, "-m", "prefect", "server", "start"]
    command += ["--host", options.host, "--port", str(port), "--analytics-off"]
    return Service(
        "Prefect server",
        command,
        f"http://127.0.0.1:{port}/api/health",
        url,
        state_dir(home) / "serve-prefect.log",
        env,
    )


def _worker_service(home: Path, options: ServeOptions, creds: ServerCredentials | None) -> Service:
    """A Prefect process worker for ``options.worker_pool`` on these servers. Its flow runs
    inherit its environment: the servers' URLs, the credentials, and this environment's scripts
    on PATH (the ``dvc`` of a deployment's pull steps)."""
    from catdog.servers.prefect import free_loopback_port

    health_port = free_loopback_port()
    scripts = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_PROFILE"}
    env.update(
        PREFECT_API_URL=f"http://127.0.0.1:{options.prefect_port}/api",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{options.mlflow_port}",
        PREFECT_WORKER_WEBSERVER_PORT=str(health_port),
        PATH=f"{scripts}{os.pathsep}{env.get('PATH', '')}",
    )
    if creds is not None:
        env.update(
            {
                PREFECT_AUTH: creds.prefect_auth,
                MLFLOW_USER: creds.mlflow_user,
                MLFLOW_PASSWORD: creds.mlflow_password,
            }
        )
    command = [sys.executable, "-m", "prefect", "worker", "start"]
    command += ["--pool", options.worker_pool, "--type", "process", "--with-healthcheck"]
    return Service(
        f"Prefect worker (pool {options.worker_pool})",
        command,
        f"http://127.0.0.1:{health_port}/health",
        f"http://127.0.0.1:{health_port}",
        state_dir(home) / "serve-worker.log",
        env,
    )


def _banner(home: Path, services: list[Service], creds: ServerCredentials | None) -> str:
    mlflow_url, prefect_url = services[0].url, services[1].url
    lines = [
        f"MLflow tracking server  {mlflow_url}   (store {home / MLFLOW_DB})",
        f"Prefect server          {prefect_url}   (UI; runs in {prefect_home(home)})",
        "Point the pipeline at them from another shell (or another machine):",
        f"  export MLFLOW_TRACKING_URI={mlflow_url}",
        f"  export PREFECT_API_URL={prefect_url}/api",
    ]
    if creds is not None:  # the variables' names only: their values never leave the environment
        lines.append(f"  export {MLFLOW_USER}=... {MLFLOW_PASSWORD}=... {PREFECT_AUTH}=...")
        lines.append("(your MLflow account, and the team's Prefect auth string)")
    for worker in services[2:]:
        lines.append(f"{worker.name}  runs the deployments' flow runs here (log {worker.log_path})")
    lines.append("Ctrl-C stops them all." if services[2:] else "Ctrl-C stops both.")
    return "\n".join(lines) + "\n"


def serve(home: Path, options: ServeOptions, *, start_timeout_s: float = 120.0) -> int:
    """Run both servers until interrupted; 0 after a clean stop, 1 if one failed.

    Raises:
        AuthError: Credentials are required (off loopback, or ``--auth``) and missing.
    """
    creds = _credentials(options)  # before anything is started
    if stop_prefect_server(home):  # the on-demand server holds the same Prefect home
        sys.stdout.write("stopped the project's background Prefect server; serving it here\n")
    from catdog.tracking.store import serve_artifacts_through_server

    serve_artifacts_through_server(home)
    services = [_mlflow_service(home, options, creds), _prefect_service(home, options, creds)]
    stopping = {"signal": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in services:
            service.start()
        failure = _wait_until_healthy(services, start_timeout_s, stopping)
        if not failure and options.worker_pool and not stopping["signal"]:
            services.append(_worker_service(home, options, creds))  # once its server answers
            services[-1].start()
            failure = _wait_until_healthy(services[-1:], start_timeout_s, stopping)
        if failure or stopping["signal"]:
            return failure
        sys.stdout.write(_banner(home, services, creds))
        sys.stdout.flush()
        return _watch(services, start_timeout_s, stopping)
    finally:
        for service in reversed(services):
            service.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _watch(services: list[Service], start_timeout_s: float, stopping: dict[str, int]) -> int:
    """Serve until a signal. A server that dies is named with why, and restarted while the
    other keeps serving; one that dies again within :data:`CRASH_LOOP_S` of coming back, or
    does not come back, stays down (the other goes on) until both are down: then exit 1."""
    restarted_at: dict[str, float] = {}
    down: set[str] = set()
    while not stopping["signal"]:
        for service in services:
            if service.name in down or service.alive():
                continue
            others = [o.name for o in services if o is not service and o.name not in down]
            since = time.monotonic() - restarted_at.get(service.name, -CRASH_LOOP_S)
            crash_loop = since < CRASH_LOOP_S
            what_next = (
                f"not restarting it again, it died within {CRASH_LOOP_S:.0f} s of its restart "
                f"(log: {service.log_path})"
                if crash_loop
                else f"restarting it (log: {service.log_path})"
            )
            keeps = f"the {others[0]} keeps serving" if others else "no server is left"
            _say(f"the {service.name} stopped ({service.exit_reason()}); {keeps}; {what_next}")
            if crash_loop or _restart(service, start_timeout_s, stopping):
                down.add(service.name)
            else:
                restarted_at[service.name] = time.monotonic()
                _say(f"the {service.name} is back at {service.url}")
        if len(down) == len(services):
            return 1
        time.sleep(0.5)
    return 0


def _restart(service: Service, timeout_s: float, stopping: dict[str, int]) -> int:
    service.stop()  # its process group: workers the dead one left behind
    service.start(append=True)
    return _wait_until_healthy([service], timeout_s, stopping)


def _say(message: str) -> None:
    sys.stderr.write(f"catdog serve: {message}\n")
    sys.stderr.flush()


def _wait_until_healthy(services: list[Service], timeout_s: float, stopping: dict[str, int]) -> int:
    deadline = time.monotonic() + timeout_s
    pending = list(services)
    while pending and not stopping["signal"]:
        for service in list(pending):
            if not service.alive():
                return _failed(service, "exited while starting")
            if is_healthy(service.health_url):
                pending.remove(service)
        if time.monotonic() > deadline:
            return _failed(pending[0], f"not healthy after {timeout_s:.0f} s")
        time.sleep(0.5)
    return 0


def _failed(service: Service, what: str) -> int:
    taken = ""
    if not service.alive() and _port_taken(service.port):
        taken = (
            f"Port {service.port} is taken by another program: choose another with "
            "--mlflow-port / --prefect-port.\n"
        )
    sys.stderr.write(
        f"catdog serve: the {service.name} {what}. Last lines of {service.log_path}:\n"
        f"{service.log_tail()}\n{taken}"
    )
    return 1


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
