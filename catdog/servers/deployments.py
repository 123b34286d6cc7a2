"""``catdog deploy``: the deployments of ``prefect.yaml``, registered with Prefect's own ``prefect
deploy``, after what it does not do itself: it refuses a work pool that does not exist, so the
pool is created first (a process pool); and the run form's defaults are ``params.yaml``'s values,
which ``prefect.yaml`` cannot read, so they are passed as the deployments' parameters.

Running it again with the same ``prefect.yaml``, ``params.yaml`` and git remote changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from catdog.errors import CatdogError

__all__ = ["DeployError", "Deployment", "deploy", "read_deployments"]

PREFECT_FILE = "prefect.yaml"
#: The entrypoint whose parameters are params.yaml's sections.
PIPELINE_ENTRYPOINT = "flows/pipeline.py:pipeline_flow"
#: What a deployment that clones the code reads from the environment when deployed.
GIT_VARIABLES = ("CATDOG_GIT_REPOSITORY", "CATDOG_GIT_BRANCH")


class DeployError(CatdogError):
    """A deployment could not be registered."""


@dataclass(frozen=True)
class Deployment:
    """One entry of ``prefect.yaml``'s ``deployments``."""

    name: str
    entrypoint: str
    work_pool: str
    needs_git: bool  # its pull steps clone the code from the git remote

    @property
    def takes_params(self) -> bool:
        return self.entrypoint == PIPELINE_ENTRYPOINT


def read_deployments(workspace: Path) -> list[Deployment]:
    """The deployments ``prefect.yaml`` declares.

    Raises:
        DeployError: The file is missing or is not a Prefect project file.
    """
    path = workspace / PREFECT_FILE
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise DeployError(
            f"{path}: not found; restore it (`git checkout {PREFECT_FILE}`)"
        ) from None
    except yaml.YAMLError as error:
        raise DeployError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    entries = config.get("deployments") if isinstance(config, dict) else None
    if not entries:
        raise DeployError(f"{path}: declares no deployments")
    return [
        Deployment(
            str(entry["name"]),
            str(entry.get("entrypoint", "")),
            str((entry.get("work_pool") or {}).get("name", "")),
            any(f"${name}" in json.dumps(entry) for name in GIT_VARIABLES),
        )
        for entry in entries
    ]


def _git(workspace: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def git_source(workspace: Path) -> dict[str, str]:
    """Where a worker elsewhere clones this checkout's code from: git remote ``origin`` and the
    current branch ({} without a remote or on a detached HEAD)."""
    url = _git(workspace, "remote", "get-url", "origin")
    branch = _git(workspace, "symbolic-ref", "--short", "-q", "HEAD")
    if not url or not branch:
        return {}
    if "://" not in url and ":" not in url.split("/")[0]:  # a path: absolute, for any folder
        url = str((workspace / url).resolve())
    return dict(zip(GIT_VARIABLES, (url, branch), strict=True))


def ensure_work_pool(name: str) -> bool:
    """Create the process work pool ``name`` unless it exists; True if it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True


def form_defaults(workspace: Path) -> dict[str, Any]:
    """The run form's defaults: ``params.yaml``'s sections, validated."""
    from catdog.params import load_params
    from catdog.workspace.params_file import PARAMS_FILE

    return load_params(workspace / PARAMS_FILE, display=PARAMS_FILE).model_dump(mode="json")


def _prefect_deploy(
    workspace: Path, names: list[str], params: dict[str, Any] | None, env: dict[str, str]
) -> str:
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy"]
    command += ["--prefect-file", str(workspace / PREFECT_FILE)]
    for name in names:
        command += ["--name", name]
    if params is not None:
        command += ["--params", json.dumps(params)]
    done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        lines = [line.strip(" │╭╮╰╯─") for line in output.splitlines() if line.strip(" │╭╮╰╯─")]
        raise DeployError(f"prefect deploy {' '.join(names)} failed: {' '.join(lines[-3:])}")
    return output


def deploy(workspace: Path) -> list[str]:
    """Register every deployment of ``prefect.yaml`` that can run from here; one line each about
    what was done (Prefect's API must be set up: :func:`catdog.servers.connect.connect_servers`).

    Raises:
        DeployError: ``prefect.yaml`` is unusable or Prefect refused a deployment.
        ParamsError: ``params.yaml`` is invalid (the form's defaults would be).
    """
    deployments = read_deployments(workspace)
    lines = []
    for pool in dict.fromkeys(d.work_pool for d in deployments if d.work_pool):
        created = ensure_work_pool(pool)
        lines.append(f"work pool {pool!r}: {'created (process)' if created else 'exists'}")
    source = git_source(workspace)
    runnable = [d for d in deployments if source or not d.needs_git]
    for skipped in (d for d in deployments if d not in runnable):
        lines.append(
            f"{skipped.name}: not deployed: it clones the code from git remote `origin` on the "
            "current branch, and this checkout has none (`git remote add origin URL`)"
        )
    env = {**os.environ, **source}
    defaults = form_defaults(workspace)
    for takes_params in (True, False):
        group = [d.name for d in runnable if d.takes_params is takes_params]
        if group:
            _prefect_deploy(workspace, group, defaults if takes_params else None, env)
    lines += [f"{d.name}: deployed ({d.entrypoint}, work pool {d.work_pool})" for d in runnable]
    return lines
