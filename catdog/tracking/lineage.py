"""Lineage: what made each run and model, recorded as MLflow tags and read back for
``catdog lineage MODEL``.

Every stage's child run is tagged with the git commit and DVC's own hashes of the data it read or
made (the same md5/``.dir`` values as in ``dvc.lock``), and logs the split manifest as its dataset
input. ``catdog lineage`` follows a registered model version (for ``catdog``, the serving wrapper,
through to the model it wraps) back to that run, its tags and its params.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from catdog import stage_table as pipeline
from catdog.errors import ModelReferenceError
from catdog.manifest import read_manifest, split_rows
from catdog.vocabulary import (
    AUGMENTED_DIR,
    CONV_BASE_WEIGHTS,
    FEATURES_DIR,
    FEATURES_META,
    MANIFEST,
    RAW_DIR,
    model_path,
)

__all__ = [
    "DATA_TAGS",
    "LINEAGE_TAG_KEYS",
    "dvc_hash",
    "lineage",
    "lineage_tags",
    "parse_model_reference",
    "record_lineage",
    "render_lineage",
    "run_lineage",
    "weights_used",
]

_REFERENCE = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))?$")

#: The data a stage's lineage names: path -> the MLflow tag holding DVC's hash of it.
DATA_TAGS: dict[str, str] = {
    RAW_DIR: "dvc.data_raw",
    MANIFEST: "dvc.manifest",
    AUGMENTED_DIR: "dvc.augmented",
    FEATURES_DIR: "dvc.features",
    CONV_BASE_WEIGHTS: "dvc.conv_base",
}
MODEL_TAG = "dvc.model"  # DVC's hash of a model stage's .keras file
DECISION_TAG = "champion.decision"  # on a catdog version and the registered model: why champion
#: Run tags copied onto each registered model version, so the registry shows where it came from.
LINEAGE_TAG_KEYS: tuple[str, ...] = (
    "git.commit",
    "git.dirty",
    *DATA_TAGS.values(),
    MODEL_TAG,
    "weights",
    "weights.requested",
    "prefect.flow_run_id",
    "dvc.exp_name",
)


@functools.cache
def _dvc_repo(workspace: str) -> Any:
    """The workspace's DVC repository, opened once per process (its state database with it)."""
    from dvc.repo import Repo

    return Repo(workspace)


def dvc_hash(path: Path, workspace: Path | None = None) -> str:
    """The hash DVC gives a file or folder (``<md5>`` or ``<md5>.dir``), '' if it is missing.

    With the ``workspace`` (a DVC repository), DVC's own state database serves the hashes of files
    it already knows unchanged (same inode, size and mtime), as for ``dvc status``, and keeps the
    ones computed here for DVC; its ``.dvcignore`` applies, as in ``dvc.lock``.
    """
    if not path.exists():
        return ""
    from dvc_data.hashfile.build import build  # DVC's modules: only in processes that hash
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    if workspace is not None and (workspace / ".dvc").is_dir():
        repo = _dvc_repo(str(workspace.resolve()))
        odb, ignore = repo.cache.local, repo.dvcignore
        _, _, obj = build(odb, str(path), fs, "md5", dry_run=True, ignore=ignore)
        return str(obj.hash_info.value)
    with tempfile.TemporaryDirectory(prefix="catdog-dvc-hash-") as scratch:
        _, _, obj = build(HashFileDB(fs, scratch), str(path), fs, "md5", dry_run=True)
    return str(obj.hash_info.value)


def weights_used(root: Path) -> str:
    """The VGG16 weights the workspace's features were made with ('' before features ran)."""
    meta = root / FEATURES_META
    if not meta.is_file():
        return ""
    return str(json.loads(meta.read_text())["weights"]["label"])


def lineage_tags(stage: str, root: Path) -> dict[str, str]:
    """DVC hashes of what the stage read and made: ``dvc.data_raw`` (every stage), the manifest,
    augmented views, features and conv base it depends on, and ``dvc.model`` for a model stage.

    The hashes are DVC's own (md5, ``.dir`` for folders), so ``dvc.lock`` and the DVC cache can be
    searched for them.
    """
    s = pipeline.stage(stage)
    wanted = {RAW_DIR}
    for dep in (*s.deps, *s.outs):
        for path in DATA_TAGS:
            if dep == path or dep.startswith(f"{path}/"):
                wanted.add(path)
    tags = {DATA_TAGS[path]: dvc_hash(root / path, root) for path in sorted(wanted)}
    if stage in pipeline.MODELS:
        tags[MODEL_TAG] = dvc_hash(root / model_path(stage), root)
    return tags


def record_lineage(stage: str, root: Path) -> None:
    """Tag the active run with its data's DVC hashes and weights; log its dataset input.

    Called once the stage's task has finished, so ingest's ``data/raw`` and each model stage's
    model are there to hash.
    """
    tags = lineage_tags(stage, root)
    weights = weights_used(root)
    if weights:
        tags["weights"] = weights
    mlflow.set_tags(tags)
    log_dataset_input(stage, root)


def manifest_dataset(root: Path, split: str = "") -> Any:
    """The split manifest (or one ``split`` of it) as an MLflow dataset, its digest DVC's hash."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    manifest_path = root / MANIFEST
    manifest = read_manifest(manifest_path)  # all text: no integer columns for MLflow to doubt
    rows = split_rows(manifest, split) if split else manifest
    # Named, not guessed: MLflow registers its local source twice and warns when it resolves one
    local = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    return mlflow.data.from_pandas(
        rows,
        source=local(manifest_path.resolve().as_uri()),
        targets="label",
        name=f"catdog-{split}-split" if split else "catdog-manifest",
        digest=dvc_hash(manifest_path, root)[:36],
    )


def log_dataset_input(stage: str, root: Path) -> None:
    """Log the split manifest as the run's dataset input (``mlflow.log_input``), when it reads it.

    Evaluate logs the test split (context ``evaluation``); the others the whole manifest.
    """
    if MANIFEST not in pipeline.stage(stage).deps or not (root / MANIFEST).is_file():
        return
    if stage == "evaluate":
        mlflow.log_input(manifest_dataset(root, "test"), context="evaluation")
    else:
        mlflow.log_input(manifest_dataset(root), context="training")


def parse_model_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``NAME@alias``, ``NAME/version``, ``NAME`` (latest) or a ``models:/`` URI of those.

    Returns:
        (name, alias, version); at most one of alias and version is set.
    """
    match = _REFERENCE.match(reference.strip())
    if not match:
        raise ModelReferenceError(
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
        raise ModelReferenceError(f"{reference}: {error.message}") from None
    if not latest:
        raise ModelReferenceError(f"{reference}: no registered model of that name has a version")
    return latest[0]


def lineage(tracking_uri: str, reference: str) -> dict[str, Any]:
    """Everything known of how a registered model version was made, as a plain dict."""
    client = MlflowClient(tracking_uri=tracking_uri)
    version = _version(client, reference)
    wrapped, decisions = _wrapped_model(client, version)
    run = client.get_run(wrapped.run_id if wrapped is not None else version.run_id)
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
        **_run_record(run, decisions),
    }


def _wrapped_model(client: MlflowClient, version: Any) -> tuple[Any, dict[str, str]]:
    """The model version a serving wrapper wraps, and the champion decisions on it; (None, {})
    for a model that is not a wrapper."""
    source = version.tags.get("catdog.source", "")
    if not source:
        return None, {}
    name, number = source.rsplit("/", 1)
    decisions = {
        "promoted": version.tags.get(DECISION_TAG, ""),
        "latest": client.get_registered_model(version.name).tags.get(DECISION_TAG, ""),
    }
    return client.get_model_version(name, number), decisions


def _run_record(run: Any, decisions: dict[str, str]) -> dict[str, Any]:
    """What the training run recorded: commit, data hashes, weights, (the champion
    ``decisions``,) Prefect and DVC ids, params and dataset inputs."""
    tags = run.data.tags
    return {
        "git": {"commit": tags.get("git.commit", ""), "dirty": tags.get("git.dirty") == "true"},
        "data": {
            label: tags[tag]
            for label, tag in [*DATA_TAGS.items(), ("the model file", MODEL_TAG)]
            if tags.get(tag)
        },
        "weights": {
            "used": tags.get("weights", ""),
            "requested": tags.get("weights.requested", ""),
        },
        "champion": decisions,
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
    if info["champion"].get("promoted"):
        lines.append(f"promoted:  {info['champion']['promoted']}")
    if info["champion"].get("latest"):
        lines.append(f"latest:    {info['champion']['latest']}")
    lines.append("data (DVC hashes):")
    lines += [f"  {label:<28} {value}" for label, value in info["data"].items()] or ["  -"]
    lines.append("params:")
    lines += [f"  {key} = {value}" for key, value in info["params"].items()] or ["  -"]
    return "\n".join(lines) + "\n"


def run_lineage(tracking_uri: str, reference: str, as_json: bool) -> str:
    info = lineage(tracking_uri, reference)
    return json.dumps(info, indent=2) + "\n" if as_json else render_lineage(info)
