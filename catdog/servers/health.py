"""Is the MLflow tracking server there? Fail fast at start, and say so clearly when it goes away.

With ``MLFLOW_TRACKING_URI`` pointing at a server, ``catdog stage`` and ``catdog run`` ask its
``/health`` endpoint before any work and stop within seconds if it does not answer (or, with
``CATDOG_TRACKING_FALLBACK=local``, warn and log to the project's local store instead). MLflow's
own HTTP client would retry a dead server for minutes; bounded defaults make a server that dies
mid-run fail the stage within tens of seconds, and :func:`tracking_lost_message` turns the
resulting error into one line that names the server and what to do.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from catdog.errors import CatdogError, error_chain
from catdog.workspace.paths import local_tracking_uri

__all__ = [
    "FALLBACK_VARIABLE",
    "HTTP_DEFAULTS",
    "PrefectServerLost",
    "TrackingServerError",
    "apply_http_defaults",
    "is_healthy",
    "prefect_lost_message",
    "prefect_watch",
    "probe",
    "probe_tracking_server",
    "require_tracking_server",
    "server_lost_message",
    "tracking_lost_message",
    "tracking_server_gone",
]

FALLBACK_VARIABLE = "CATDOG_TRACKING_FALLBACK"

# MLflow's defaults (7 retries, back-off factor 2, 120 s timeout) keep a stage waiting for
# minutes on a dead server. These bound one call to about 10 s of retries (urllib3 waits
# 0, 2, 4 s plus up to 1 s of jitter each) while riding out a short hiccup. Anything set wins.
# Prefect's client retries each call 5 times, waiting 2, 4, 8, 16 and 32 s: a run whose Prefect
# server died spent about 5 minutes in a series of such calls. Two retries (2 and 4 s plus
# jitter) ride out a restart of the server and bound each call to about 10 s.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # seconds without a byte, not a whole upload
    "PREFECT_CLIENT_MAX_RETRIES": "2",
}

PROBE_TIMEOUT_S = 5.0
PREFECT_WATCH_EVERY_S = 10.0


class TrackingServerError(CatdogError, RuntimeError):
    """The MLflow tracking server the run is pointed at does not answer."""


def apply_http_defaults() -> None:
    """Bound MLflow's HTTP retries and timeout, unless the user has set them."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _server_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if it names an HTTP(S) server, else ''."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri if uri.startswith(("http://", "https://")) else ""


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """Why ``GET url`` (a health endpoint) shows no live server ('' when it does).

    The one health check of the project: MLflow's and Prefect's servers, started by catdog or
    not. A proxy in front of a dead server answers 502/503/504; any other answer is a live one.
    """
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:.0f} s"
    except httpx.HTTPError as error:
        return str(error) or type(error).__name__
    if response.status_code >= 500:
        return f"HTTP {response.status_code} from {response.url}"
    return ""


def is_healthy(url: str, timeout_s: float = 2.0) -> bool:
    """True if the health endpoint at ``url`` answers as a live server."""
    return not probe(url, timeout_s)


def probe_tracking_server(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """Why the MLflow tracking server at ``uri`` does not answer ('' when it does)."""
    return probe(f"{uri.rstrip('/')}/health", timeout_s)


def tracking_server_gone(uri: str) -> bool:
    """True if ``uri`` names an HTTP(S) tracking server that does not answer a quick probe."""
    return uri.startswith(("http://", "https://")) and bool(probe_tracking_server(uri, 2.0))


def require_tracking_server(home: Path) -> None:
    """Stop before any work if ``MLFLOW_TRACKING_URI`` names a server that does not answer.

    With ``CATDOG_TRACKING_FALLBACK=local`` the run warns loudly on stderr and logs to the
    project's local store (``<home>/mlflow.db``) instead.

    Raises:
        TrackingServerError: the server does not answer and no fallback was asked for.
    """
    apply_http_defaults()
    uri = _server_uri()
    if not uri:
        return
    reason = probe_tracking_server(uri)
    if not reason:
        return
    fallback = os.environ.get(FALLBACK_VARIABLE, "").strip().lower()
    if fallback == "local":
        del os.environ["MLFLOW_TRACKING_URI"]
        sys.stderr.write(
            f"catdog: WARNING: MLflow tracking server {uri} is not answering ({reason}); "
            f"{FALLBACK_VARIABLE}=local: this run logs to the local store "
            f"{local_tracking_uri(home)} instead, not to the server.\n"
        )
        return
    if fallback:
        raise TrackingServerError(
            f"{FALLBACK_VARIABLE}={fallback!r} is not understood; the only fallback is 'local'"
        )
    raise TrackingServerError(
        f"MLflow tracking server {uri} is not answering ({reason}). Start it (`catdog serve` "
        "in the project), or unset MLFLOW_TRACKING_URI to log to the project's local store, "
        f"or set {FALLBACK_VARIABLE}=local to fall back to it when the server is down."
    )


def _is_transport_failure(error: BaseException) -> bool:
    """MLflow's REST client wraps every failed request (refused, reset, timed out, 5xx after its
    retries) in an ``MlflowException`` whose message starts with this."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and str(error.message).startswith("API request to")


def _lost_connection(error: BaseException) -> bool:
    """True if ``error``'s chain holds a failed connection (refused, reset, timed out) of an
    HTTP client other than MLflow's (see :func:`_is_transport_failure` for that one)."""
    connection = (httpx.TransportError, ConnectionError, TimeoutError)
    return any(isinstance(e, connection) for e in error_chain(error))


class PrefectServerLost(CatdogError, RuntimeError):
    """The Prefect server the run reports to stopped answering while a stage worked."""


def _prefect_gone_reason(api: str) -> str:
    """Why the Prefect API at ``api`` does not answer ('' when it does)."""
    reason = probe(f"{api.rstrip('/')}/health", 2.0)
    return "connection refused" if "refused" in reason.lower() else reason


def _prefect_lost_line(api: str, reason: str) -> str:
    return (
        f"PREFECT_API_URL={api}: the Prefect server stopped answering during the run "
        f"({reason}); the stage that was running is not recorded as done. Start the server "
        "again (`catdog serve`, or let `catdog run` start the project's own) and run the same "
        "command again."
    )


def prefect_lost_message(error: BaseException) -> str:
    """One line for a run that failed because the Prefect server went away ('' otherwise)."""
    api = os.environ.get("PREFECT_API_URL", "")
    if not api or not _lost_connection(error):
        return ""
    reason = _prefect_gone_reason(api)
    return _prefect_lost_line(api, reason) if reason else ""  # answering: something else failed


def prefect_watch(every_s: float = PREFECT_WATCH_EVERY_S) -> Callable[[], None]:
    """A check to call as long work goes on (each epoch): it raises :class:`PrefectServerLost`
    once the run's Prefect server has stopped answering.

    A task's body needs no server, so without it training would go on for its whole length after
    the server died, for a result nothing could record. It asks at most every ``every_s``
    seconds, and a server must miss two asks 5 s apart (a restart takes less); without
    ``PREFECT_API_URL`` it checks nothing.
    """
    api = os.environ.get("PREFECT_API_URL", "")
    last = time.monotonic()

    def check() -> None:
        nonlocal last
        if not api or time.monotonic() - last < every_s:
            return
        last = time.monotonic()
        if _prefect_gone_reason(api):
            time.sleep(5.0)
            reason = _prefect_gone_reason(api)
            if reason:
                raise PrefectServerLost(_prefect_lost_line(api, reason))

    return check


def server_lost_message(error: BaseException) -> str:
    """One line for a run that failed because MLflow's or Prefect's server went away."""
    return tracking_lost_message(error) or prefect_lost_message(error)


def tracking_lost_message(error: BaseException) -> str:
    """One line for a run that failed because the tracking server went away ('' otherwise)."""
    uri = _server_uri()
    if not uri:
        return ""
    failure = next((e for e in error_chain(error) if _is_transport_failure(e)), None)
    if failure is None:
        return ""
    text = str(failure)
    if "Connection refused" in text or "Failed to establish" in text:
        reason = "connection refused"
    elif "timeout" in text.lower() or "timed out" in text.lower():
        reason = "timed out"
    else:
        reason = text if len(text) <= 200 else text[:200] + "..."
    return (
        f"MLflow tracking server {uri} stopped answering during the run ({reason}); "
        "the stage's outputs were not recorded as done. Restart the server (`catdog serve`) "
        "and run the same command again."
    )
