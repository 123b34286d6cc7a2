"""``catdog serve``: an MLflow tracking server and a Prefect server for a team, on loopback.

Both run as child processes with their logs in ``.catdog/``; the command waits until each answers
its health check, prints their URLs and the two variables that point the pipeline at them, and
stops both cleanly on Ctrl-C (or when either one dies).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from workspace.paths import MLFLOW_ARTIFACTS, MLFLOW_DB, local_tracking_uri, state_dir

__all__ = ["Service", "serve"]

STOP_GRACE_S = 15.0


@dataclass
class Service:
    """One server process and how to tell it is up."""

    name: str
    command: list[str]
    health_url: str
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
            )

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _services(home: Path, host: str, mlflow_port: int, prefect_port: int) -> list[Service]:
    state = state_dir(home)
    backend = local_tracking_uri(home)
    return [
        Service(
            "MLflow tracking server",
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", backend,
                "--artifacts-destination", str(home / MLFLOW_ARTIFACTS),
                "--host", host, "--port", str(mlflow_port),
            ],
            f"http://{host}:{mlflow_port}/health",
            f"http://{host}:{mlflow_port}",
            state / "serve-mlflow.log",
        ),
        Service(
            "Prefect server",
            [
                sys.executable, "-m", "prefect", "server", "start",
                "--host", host, "--port", str(prefect_port), "--analytics-off",
            ],
            f"http://{host}:{prefect_port}/api/health",
            f"http://{host}:{prefect_port}",
            state / "serve-prefect.log",
        ),
    ]  # fmt: skip


def serve(
    home: Path,
    *,
    host: str = "127.0.0.1",
    mlflow_port: int = 5000,
    prefect_port: int = 4200,
    start_timeout_s: float = 120.0,
) -> int:
    """Run both servers until interrupted; 0 after a clean stop, 1 if one failed."""
    services = _services(home, host, mlflow_port, prefect_port)
    env = dict(
        os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true"
    )
    env.pop("PREFECT_API_URL", None)  # the Prefect server must not talk to another one
    stopping = {"signal": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in services:
            service.start(env)
        deadline = time.monotonic() + start_timeout_s
        pending = list(services)
        while pending and not stopping["signal"]:
            for service in list(pending):
                if not service.alive():
                    return _failed(service, services, "exited while starting")
                if service.healthy():
                    pending.remove(service)
            if time.monotonic() > deadline:
                return _failed(pending[0], services, f"not healthy after {start_timeout_s:.0f} s")
            time.sleep(0.5)
        if stopping["signal"]:
            return 0
        mlflow_url, prefect_url = services[0].url, services[1].url
        sys.stdout.write(
            f"MLflow tracking server  {mlflow_url}   (store {home / MLFLOW_DB})\n"
            f"Prefect server          {prefect_url}\n"
            "Point the pipeline at them from another shell:\n"
            f"  export MLFLOW_TRACKING_URI={mlflow_url}\n"
            f"  export PREFECT_API_URL={prefect_url}/api\n"
            "Ctrl-C stops both.\n"
        )
        sys.stdout.flush()
        while not stopping["signal"]:
            for service in services:
                if not service.alive():
                    return _failed(service, services, "stopped unexpectedly")
            time.sleep(0.5)
        return 0
    finally:
        for service in reversed(services):
            service.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _failed(service: Service, services: list[Service], what: str) -> int:
    sys.stderr.write(
        f"catdog serve: the {service.name} {what}. Last lines of {service.log_path}:\n"
        f"{service.log_tail()}\n"
        "Is the port already taken? Choose others with --mlflow-port / --prefect-port.\n"
    )
    return 1
