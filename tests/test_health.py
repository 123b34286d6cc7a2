"""The tracking-server probe and messages, against real sockets: a tiny HTTP server, a dead port."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from catdog.cli.main import main
from catdog.servers import health


@pytest.fixture(autouse=True)
def saved_environment() -> Iterator[None]:
    """The functions under test set variables; each test leaves os.environ as it found it."""
    saved = dict(os.environ)
    for key in ("MLFLOW_TRACKING_URI", health.FALLBACK_VARIABLE, *health.HTTP_DEFAULTS):
        os.environ.pop(key, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def dead_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: nobody listens


@pytest.fixture
def server_answering() -> Iterator[dict[str, int]]:
    """A real HTTP server whose /health answers with ``status['code']``."""
    status = {"code": 200}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    status["port"] = server.server_address[1]
    yield status
    server.shutdown()
    server.server_close()


def test_probe_a_live_server_a_failing_one_and_a_dead_port(server_answering):
    uri = f"http://127.0.0.1:{server_answering['port']}"
    assert health.probe_tracking_server(uri) == ""
    assert health.probe_tracking_server(uri + "/") == ""
    server_answering["code"] = 503  # what a proxy says when the server behind it is gone
    assert "HTTP 503" in health.probe_tracking_server(uri)
    assert "refused" in health.probe_tracking_server(dead_uri()).lower()
    assert health.tracking_server_gone(dead_uri())
    assert not health.tracking_server_gone("sqlite:///nowhere/mlflow.db")


def test_a_local_store_is_not_probed_and_the_http_defaults_are_set(tmp_path):
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "7"  # the user's choice wins
    health.require_tracking_server(tmp_path)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"

    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    # MLflow reads them as ints within its limits (else every request would fail)
    assert 0 < MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() <= 10
    assert 0 < MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() <= 120


def test_a_dead_server_at_start_is_an_error_naming_it(tmp_path):
    uri = dead_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    with pytest.raises(health.TrackingServerError) as raised:
        health.require_tracking_server(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"MLflow tracking server {uri} is not answering (")
    assert "catdog serve" in message and "unset MLFLOW_TRACKING_URI" in message
    assert os.environ["MLFLOW_TRACKING_URI"] == uri


def test_the_local_fallback_is_opt_in_and_loud(tmp_path, capsys):
    uri = dead_uri()
    os.environ.update({"MLFLOW_TRACKING_URI": uri, health.FALLBACK_VARIABLE: "local"})
    health.require_tracking_server(tmp_path)
    assert "MLFLOW_TRACKING_URI" not in os.environ  # so the run uses the project's store
    warning = capsys.readouterr().err
    assert "WARNING" in warning and uri in warning
    assert f"sqlite:///{tmp_path / 'mlflow.db'}" in warning

    os.environ.update({"MLFLOW_TRACKING_URI": uri, health.FALLBACK_VARIABLE: "yes"})
    with pytest.raises(health.TrackingServerError, match="only fallback is 'local'"):
        health.require_tracking_server(tmp_path)


def test_the_command_line_stops_before_any_work(capsys):
    uri = dead_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    prefect_api = os.environ.get("PREFECT_API_URL")
    assert main(["stage", "ingest"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"catdog: error: MLflow tracking server {uri} is not answering")
    assert os.environ.get("PREFECT_API_URL") == prefect_api  # no Prefect server was looked for


def test_a_lost_server_mid_run_reads_as_one_line_naming_it():
    uri = dead_uri()
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    with pytest.raises(MlflowException) as raised:
        MlflowClient(uri).log_metric("0" * 32, "loss", 0.5)  # MLflow's own error, not a copy
    try:
        raise RuntimeError("the task failed") from raised.value  # as Prefect may wrap it
    except RuntimeError as wrapped:
        message = health.tracking_lost_message(wrapped)
    assert message.startswith(f"MLflow tracking server {uri} stopped answering during the run")
    assert "(connection refused)" in message and "run the same command again" in message
    assert "\n" not in message

    assert health.tracking_lost_message(MlflowException("Run 'x' not found")) == ""
    assert health.tracking_lost_message(ValueError("loss is nan")) == ""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path('mlflow.db').resolve()}"
    assert health.tracking_lost_message(raised.value) == ""
