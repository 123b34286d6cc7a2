"""The checks before a run does any work, the same for every door (``catdog run``, ``catdog
stage``, ``catdog deploy`` and a deployed flow run): the tracking server answers and takes our
credentials, the Prefect API answers, the run's data source and VGG16 weights can be had."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from catdog.workspace.paths import tracking_home

if TYPE_CHECKING:
    from catdog.params import Params

__all__ = ["check_run_inputs", "check_tracking_server", "connect_servers"]


def check_tracking_server(workspace: Path) -> str:
    """The tracking URI, once a tracking server there answers and takes our credentials."""
    from catdog.servers.auth import require_credentials
    from catdog.servers.health import require_tracking_server
    from catdog.tracking.store import tracking_uri

    home = tracking_home(workspace)
    require_tracking_server(home)
    require_credentials(tracking_uri(home), "")
    return tracking_uri(home)


def connect_servers(workspace: Path) -> str:
    """Fail fast if the MLflow server is down; point Prefect at its server (before importing it:
    Prefect reads its settings then) and return its API URL."""
    from catdog.servers.auth import require_credentials
    from catdog.servers.health import require_tracking_server
    from catdog.servers.prefect import ensure_prefect_api, prefect_home
    from catdog.tracking.store import tracking_uri

    home = tracking_home(workspace)
    require_tracking_server(home)  # seconds, not minutes of retries
    team_prefect = os.environ.get("PREFECT_API_URL", "")
    require_credentials(tracking_uri(home), team_prefect)  # one line naming what to set
    if not team_prefect:  # the project's own server, its own history
        os.environ["PREFECT_HOME"] = str(prefect_home(home))
    os.environ["PREFECT_API_URL"] = ensure_prefect_api(home)
    return os.environ["PREFECT_API_URL"]


def check_run_inputs(workspace: Path) -> Callable[[Params], None]:
    """The checks before any work, even before params.yaml is written: the run's data source and
    VGG16 weights can be had, and the servers answer and take our credentials."""

    def check(params: Params) -> None:
        from catdog.sources import resolve_source
        from catdog.weights import resolve_weights

        resolve_source(params.data.source, workspace)
        resolve_weights(params.features.weights, root=workspace)
        connect_servers(workspace)

    return check
