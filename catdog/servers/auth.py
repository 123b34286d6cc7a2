"""Credentials for the team's servers, read from the standard variables, never written down.

Servers: ``catdog serve`` off loopback (or with ``--auth``) runs MLflow's ``basic-auth`` app, its
admin account being ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow takes the
password from ``MLFLOW_AUTH_ADMIN_PASSWORD``, so no file holds it), and Prefect with
``PREFECT_SERVER_API_AUTH_STRING`` set to ``PREFECT_API_AUTH_STRING``. ``--credentials FILE``
reads the same variables from a file outside the repository.

Clients: MLflow's client sends ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` and
Prefect's ``PREFECT_API_AUTH_STRING`` by themselves; :func:`require_credentials` checks, before any
work, that the servers accept them, and fails in one line naming the variable to set.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from catdog.errors import CatdogError

__all__ = [
    "MLFLOW_PASSWORD",
    "MLFLOW_USER",
    "PREFECT_AUTH",
    "AuthError",
    "ServerCredentials",
    "read_credentials",
    "require_credentials",
]

MLFLOW_USER = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
PREFECT_AUTH = "PREFECT_API_AUTH_STRING"
VARIABLES = (MLFLOW_USER, MLFLOW_PASSWORD, PREFECT_AUTH)
TIMEOUT_S = 10.0


class AuthError(CatdogError):
    """Credentials are missing, rejected, or kept where they could leak."""


@dataclass(frozen=True)
class ServerCredentials:
    """The team servers' credentials (repr shows no secret)."""

    mlflow_user: str
    mlflow_password: str
    prefect_auth: str

    def __repr__(self) -> str:
        return f"ServerCredentials(mlflow_user={self.mlflow_user!r}, <secrets hidden>)"


def _inside_repository(path: Path) -> bool:
    """True if ``path`` lies in a git work tree (where a commit could pick it up)."""
    result = subprocess.run(
        ["git", "-C", str(path.parent), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "true"


def _read_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` and quotes allowed) of a credentials file."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise AuthError(f"--credentials {path}: no such file")
    if _inside_repository(path):
        raise AuthError(
            f"--credentials {path}: the file is inside a git repository, where a commit could "
            "publish it; keep it outside (e.g. ~/.config/catdog/credentials) with mode 600"
        )
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() in VARIABLES:
            values[key.strip()] = value.strip().strip("'\"")
    return values


def read_credentials(path: Path | None = None) -> ServerCredentials | None:
    """The credentials from ``path`` (if given) or the environment; None if any is missing."""
    values = {name: os.environ.get(name, "") for name in VARIABLES}
    if path is not None:
        values.update(_read_file(path))
    if not all(values.values()):
        return None
    return ServerCredentials(values[MLFLOW_USER], values[MLFLOW_PASSWORD], values[PREFECT_AUTH])


def _mlflow_refusal(uri: str) -> str:
    """Why the MLflow server at ``uri`` refuses this client's credentials ('' if it accepts)."""
    user, password = os.environ.get(MLFLOW_USER, ""), os.environ.get(MLFLOW_PASSWORD, "")
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
    auth = (user, password) if user or password else None
    try:
        status = httpx.get(url, params={"max_results": 1}, auth=auth, timeout=TIMEOUT_S).status_code
    except httpx.HTTPError:
        return ""  # not our business here: the health probe reports a server that is down
    if status in (401, 403):
        how = "refused the credentials in" if auth else "asks for credentials: set"
        return f"MLflow tracking server {uri} {how} {MLFLOW_USER} and {MLFLOW_PASSWORD}"
    return ""


def _prefect_refusal(api_url: str) -> str:
    """Why the Prefect API at ``api_url`` refuses this client ('' if it accepts)."""
    secret = os.environ.get(PREFECT_AUTH, "")
    headers = {"Authorization": f"Basic {base64.b64encode(secret.encode()).decode()}"}
    try:
        status = httpx.get(
            f"{api_url.rstrip('/')}/admin/version",
            headers=headers if secret else {},
            timeout=TIMEOUT_S,
        ).status_code
    except httpx.HTTPError:
        return ""
    if status in (401, 403):
        how = "refused the auth string in" if secret else "asks for credentials: set"
        return f"Prefect server {api_url} {how} {PREFECT_AUTH}"
    return ""


def require_credentials(tracking_uri: str, prefect_api_url: str) -> None:
    """Fail before any work if a server the run will use refuses its credentials.

    Raises:
        AuthError: One line naming the server and the variable(s) to set.
    """
    problems = []
    if tracking_uri.startswith(("http://", "https://")):
        problems.append(_mlflow_refusal(tracking_uri))
    if prefect_api_url:
        problems.append(_prefect_refusal(prefect_api_url))
    message = "; ".join(p for p in problems if p)
    if message:
        raise AuthError(f"{message} (the team's admin has them), then run this again")
