"""``catdog lineage MODEL@alias``: which data, code and params made a registered model version.

The answer comes from MLflow: the version's run (for ``catdog``, the serving wrapper, the run of
the stage that trained the model it wraps), its tags (git commit, DVC hashes of its inputs,
weights, Prefect flow run) and its params.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

__all__ = ["lineage", "parse_model_reference", "render_lineage", "run_lineage"]

_REFERENCE = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))?$")

# Tag, label: what the report shows of a run's lineage, in this order.
DATA_TAGS = (
    ("dvc.data_raw", "data/raw"),
    ("dvc.manifest", "data/split/manifest.csv"),
    ("dvc.augmented", "data/augmented"),
    ("dvc.features", "data/features"),
    ("dvc.conv_base", "models/conv_base.weights.h5"),
    ("dvc.model", "the model file"),
)


def parse_model_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``NAME@alias``, ``NAME/version``, ``NAME`` (latest) or a ``models:/`` URI of those.

    Returns:
        (name, alias, version); at most one of alias and version is set.
    """
    match = _REFERENCE.match(reference.strip())
    if not match:
        raise ValueError(
            f"{reference!r} is not a registered model reference: use NAME@ALIAS (e.g. "
            "catdog@champion), NAME/VERSION (e.g. catdog-scratch/3) or models:/ of those"
        )
    return match["name"], match["alias"], match["version"]


def _version(client: MlflowClient, reference: str) -> Any:
    name, alias, version = parse_model_reference(reference)
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if version:
            return client.get_model_version(name, version)
        latest = client.search_model_versions(
            f"name = '{name}'", order_by=["version_number DESC"], max_results=1
        )
    except MlflowException as error:
        raise ValueError(f"{reference}: {error.message}") from None
    if not latest:
        raise ValueError(f"{reference}: no registered model of that name has a version")
    return latest[0]


def lineage(tracking_uri: str, reference: str) -> dict[str, Any]:
    """Everything known of how a registered model version was made, as a plain dict."""
    client = MlflowClient(tracking_uri=tracking_uri)
    version = _version(client, reference)
    wrapped = None
    run_id = version.run_id
    source = version.tags.get("catdog.source", "")
    if source:  # the serving wrapper: follow it to the model it wraps
        name, number = source.rsplit("/", 1)
        wrapped = client.get_model_version(name, number)
        run_id = wrapped.run_id
    run = client.get_run(run_id)
    tags = run.data.tags
    parent_id = tags.get("mlflow.parentRunId", "")
    parent = client.get_run(parent_id) if parent_id else None
    return {
        "reference": reference,
        "model": {
            "name": version.name,
            "version": str(version.version),
            "aliases": list(version.aliases),
            "source": version.source,
        },
        "wraps": (
            {
                "name": wrapped.name,
                "version": str(wrapped.version),
                "aliases": list(wrapped.aliases),
            }
            if wrapped is not None
            else None
        ),
        "run": {
            "id": run.info.run_id,
            "stage": tags.get("catdog.stage", run.info.run_name),
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "execution": parent.info.run_name if parent else "",
            "execution_id": parent_id,
            "trigger": tags.get("catdog.trigger", ""),
        },
        "git": {"commit": tags.get("git.commit", ""), "dirty": tags.get("git.dirty") == "true"},
        "data": {label: tags[tag] for tag, label in DATA_TAGS if tags.get(tag)},
        "weights": {
            "used": tags.get("weights", ""),
            "requested": tags.get("weights.requested", ""),
        },
        "prefect_flow_run_id": tags.get("prefect.flow_run_id", ""),
        "dvc_experiment": tags.get("dvc.exp_name", ""),
        "params": dict(sorted(run.data.params.items())),
        "datasets": [
            {"name": i.dataset.name, "digest": i.dataset.digest, "source": i.dataset.source}
            for i in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    }


def render_lineage(info: Mapping[str, Any]) -> str:
    """The lineage as text for a terminal."""
    model, run = info["model"], info["run"]
    aliases = f" (aliases: {', '.join(model['aliases'])})" if model["aliases"] else ""
    lines = [f"{info['reference']}: {model['name']} version {model['version']}{aliases}"]
    if info["wraps"]:
        wraps = info["wraps"]
        lines.append(f"  serves {wraps['name']} version {wraps['version']}")
    git = info["git"]
    commit = (git["commit"] or "unknown (not a git repository)") + (
        " (uncommitted changes)" if git["dirty"] else ""
    )
    lines += [
        f"made by:   the {run['stage']} stage, MLflow run {run['id']} ({run['status'].lower()})",
        f"execution: {run['execution'] or '-'} (parent run {run['execution_id'] or '-'})",
        f"commit:    {commit}",
        f"weights:   {info['weights']['used'] or '-'} "
        f"(features.weights: {info['weights']['requested'] or '-'})",
        f"prefect:   flow run {info['prefect_flow_run_id'] or '-'}",
    ]
    if info["dvc_experiment"]:
        lines.append(f"dvc exp:   {info['dvc_experiment']}")
    lines.append("data (DVC hashes):")
    lines += [f"  {label:<28} {value}" for label, value in info["data"].items()] or ["  -"]
    lines.append("params:")
    lines += [f"  {key} = {value}" for key, value in info["params"].items()] or ["  -"]
    return "\n".join(lines) + "\n"


def run_lineage(tracking_uri: str, reference: str, as_json: bool) -> str:
    info = lineage(tracking_uri, reference)
    return json.dumps(info, indent=2) + "\n" if as_json else render_lineage(info)
