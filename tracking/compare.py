"""Compare pipeline executions recorded in MLflow: their test metrics side by side, and the
params that differ between them.

Each execution is a parent run (tag ``catdog.kind=pipeline``) with a child run per stage that ran
(see :mod:`tracking.runs`). An execution is reported when it has a finished ``evaluate`` child
that logged metrics.

Params: an execution's params are those its own stages logged, completed, for every stage it
skipped (DVC found it up to date), by the most recent earlier execution that ran that stage
(across all executions of the experiment, whatever ``filter_string`` selects). This is exact for
``dvc repro`` / ``catdog run`` in one workspace; for experiments DVC runs in temporary copies it is
the best guess the store allows. The ``stages`` column names the stages each execution really ran.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from catdog.io import write_text
from catdog.report import comparison_table, to_markdown
from catdog.vocabulary import MODELS

__all__ = ["METRICS", "collect_runs", "differing_params", "render_report", "run_compare"]

METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
PARAM_PREFIX = "param:"
KIND_FILTER = "tags.`catdog.kind` = 'pipeline'"
INFO_COLUMNS: tuple[str, ...] = (
    "run_id",
    "name",
    "started",
    "status",
    "trigger",
    "git_commit",
    "exp_name",
    "weights",
    "stages",
)
METRIC_COLUMNS: tuple[str, ...] = tuple(f"{m}.{k}" for m in MODELS for k in METRICS)
FORMATS = ("markdown", "html")
SUFFIX_FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
HOW_TO_MAKE_RUNS = (
    "run the pipeline first: `dvc repro` or `catdog run` (each execution logs a parent run with "
    "one child run per stage)"
)


def _search_all(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    """Every active run of the experiment matching ``filter_string`` (all pages)."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _short_commit(tags: Mapping[str, str]) -> str:
    commit = tags.get("git.commit", "")[:7]
    if commit and tags.get("git.dirty") == "true":
        commit += "-dirty"
    return commit


def _sqlite_missing(tracking_uri: str) -> bool:
    """True for a ``sqlite:///`` URI whose file does not exist (MLflow would create it)."""
    if not tracking_uri.startswith("sqlite:///"):
        return False
    path = tracking_uri.removeprefix("sqlite:///")
    return path not in ("", ":memory:") and not Path(path).exists()


def _has_metrics(run: Any) -> bool:
    return any(f"{m}_{k}" in run.data.metrics for m in MODELS for k in METRICS)


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=[*INFO_COLUMNS, *METRIC_COLUMNS])


def collect_runs(
    tracking_uri: str,
    experiment: str = "catdog",
    *,
    filter_string: str = "",
    max_results: int = 100,
    params: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per pipeline execution with an evaluate child, newest first.

    Columns: ``run_id``, ``name``, ``started`` (ISO 8601, UTC), ``status`` (the parent's),
    ``trigger``, ``git_commit`` (7 characters, ``-dirty`` appended for a dirty tree),
    ``exp_name``, ``weights``, ``stages`` (those the execution ran, comma-separated), then
    ``<model>.<metric>`` and ``param:<key>`` (sorted). ``filter_string`` (MLflow search syntax)
    selects parent runs; ``params`` keeps executions whose params (see the module docstring)
    have exactly these string values. An unknown experiment or a missing SQLite file gives an
    empty frame (the file is not created).
    """
    if _sqlite_missing(tracking_uri):
        return _empty_frame()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return _empty_frame()
    runs = _search_all(client, found.experiment_id)
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("catdog.kind") == "pipeline"}
    selected = set(parents)
    if filter_string.strip():
        matching = _search_all(client, found.experiment_id, f"{KIND_FILTER} and {filter_string}")
        selected = {r.info.run_id for r in matching}

    children: dict[str, list[Any]] = {run_id: [] for run_id in parents}
    for run in runs:
        parent_id = run.data.tags.get("mlflow.parentRunId")
        if parent_id in children:
            children[parent_id].append(run)

    rows: list[dict[str, Any]] = []
    known: dict[str, dict[str, str]] = {}  # stage -> params of its latest finished run so far
    for parent in sorted(parents.values(), key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        ran: dict[str, Any] = {}  # stage -> its latest finished child run in this execution
        for child in sorted(children[parent.info.run_id], key=lambda r: r.info.start_time or 0):
            if child.info.status == "FINISHED":
                ran[child.data.tags.get("catdog.stage") or child.info.run_name] = child
        own = {stage: dict(child.data.params) for stage, child in ran.items()}
        effective: dict[str, str] = {}
        for stage_params in [*(known[s] for s in known if s not in own), *own.values()]:
            effective.update(stage_params)
        known.update(own)
        evaluate = ran.get("evaluate")
        if parent.info.run_id not in selected or evaluate is None or not _has_metrics(evaluate):
            continue
        tags = parent.data.tags
        row: dict[str, Any] = {
            "run_id": parent.info.run_id,
            "name": parent.info.run_name or "",
            "started": _iso(parent.info.start_time),
            "status": parent.info.status,
            "trigger": tags.get("catdog.trigger", ""),
            "git_commit": _short_commit(tags),
            "exp_name": tags.get("dvc.exp_name", ""),
            "weights": evaluate.data.tags.get("weights") or tags.get("weights", ""),
            "stages": ",".join(ran),
        }
        for model in MODELS:
            for metric in METRICS:
                value = evaluate.data.metrics.get(f"{model}_{metric}", math.nan)
                row[f"{model}.{metric}"] = float(value)
        row.update({f"{PARAM_PREFIX}{k}": v for k, v in effective.items()})
        rows.append(row)

    if not rows:
        return _empty_frame()
    frame = pd.DataFrame(rows)
    param_columns = sorted(c for c in frame.columns if c.startswith(PARAM_PREFIX))
    frame = frame[[*INFO_COLUMNS, *METRIC_COLUMNS, *param_columns]]
    for key, value in (params or {}).items():
        column = PARAM_PREFIX + key.removeprefix(PARAM_PREFIX).removeprefix("params.")
        if column not in frame.columns:
            return _empty_frame()
        frame = frame[frame[column] == str(value)]
    frame = frame.iloc[::-1].head(max_results)  # newest first
    return frame.reset_index(drop=True)


def differing_params(frame: pd.DataFrame) -> list[str]:
    """The ``param:`` columns whose values differ between rows (a missing value counts)."""
    columns = [c for c in frame.columns if str(c).startswith(PARAM_PREFIX)]
    return [c for c in columns if frame[c].fillna("").astype(str).nunique() > 1]


def _labels(frame: pd.DataFrame) -> list[str]:
    return [
        f"{name} ({run_id[:8]})"
        for name, run_id in zip(frame["name"], frame["run_id"], strict=True)
    ]


def _weights_line(frame: pd.DataFrame, labels: list[str]) -> str:
    by_weights: dict[str, list[str]] = {}
    for label, weights in zip(labels, frame["weights"], strict=True):
        by_weights.setdefault(str(weights or "unknown"), []).append(label)
    if len(by_weights) == 1:
        text = f"VGG16 weights: {next(iter(by_weights))}."
    else:
        text = "VGG16 weights: " + "; ".join(f"{w} ({', '.join(e)})" for w, e in by_weights.items())
        text += "."
    if "untrained" in by_weights:
        text += (
            " Warning: untrained VGG16: transfer-learning rows (classifier, finetune) are near "
            "chance" + ("" if len(by_weights) == 1 else " for the executions that used it") + "."
        )
    return text


def _blocks(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    """The report as (kind, content) blocks: ``h1``/``h2``/``p`` text or a ``table`` frame."""
    count = len(frame)
    blocks: list[tuple[str, Any]] = [
        ("h1", f"catdog: {count} pipeline execution{'s' if count != 1 else ''} compared")
    ]
    if frame.empty:
        return [*blocks, ("p", "No execution to compare.")]
    labels = _labels(frame)

    info = frame[["started", "status", "trigger", "git_commit", "exp_name", "weights", "stages"]]
    info = info.set_axis(labels).rename_axis("execution")
    blocks += [("h2", "Executions (newest first)"), ("table", info)]

    parts = []
    for label, (_, row) in zip(labels, frame.iterrows(), strict=True):
        metrics = {m: {k: row[f"{m}.{k}"] for k in METRICS} for m in MODELS}
        table = comparison_table(metrics, METRICS).dropna(how="all", subset=list(METRICS))
        table = table.reset_index()
        table.index = pd.Index([label] * len(table), name="execution")
        parts.append(table)
    blocks += [
        ("h2", "Test metrics"),
        ("table", pd.concat(parts)),
        (
            "p",
            "book_accuracy: the test accuracy chapter 8 of Deep Learning with Python reports "
            "on Kaggle's photos (2,000 training images at 180x180), for reference.",
        ),
        ("p", _weights_line(frame, labels)),
    ]

    differing = differing_params(frame)
    blocks.append(("h2", "Params that differ between executions"))
    if count == 1:
        blocks.append(("p", "Only one execution: nothing to compare its params with."))
    elif not differing:
        blocks.append(("p", "None: every execution used the same params."))
    else:
        table = frame[differing].fillna("").set_axis(labels).rename_axis("execution")
        table.columns = [c.removeprefix(PARAM_PREFIX) for c in differing]
        blocks.append(("table", table))
    return blocks


def _markdown(blocks: Iterable[tuple[str, Any]]) -> str:
    out = []
    for kind, content in blocks:
        if kind == "table":
            out.append(to_markdown(content).rstrip("\n"))
        else:
            out.append({"h1": "# ", "h2": "## ", "p": ""}[kind] + content)
    return "\n\n".join(out) + "\n"


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th{background:#f3f3f3}"
)


def _html(blocks: list[tuple[str, Any]]) -> str:
    title = next(content for kind, content in blocks if kind == "h1")
    body = []
    for kind, content in blocks:
        if kind == "table":
            body.append(
                content.to_html(
                    float_format=lambda x: f"{x:.3f}", na_rep="n/a", border=0, escape=True
                )
            )
        else:
            body.append(f"<{kind}>{html.escape(content)}</{kind}>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def render_report(frame: pd.DataFrame, *, fmt: str = "markdown") -> str:
    """The comparison report: executions, one metrics row per execution and model (with the
    book's test accuracy), the weights used, and the params that differ between executions.

    ``fmt`` is ``markdown`` or ``html`` (a standalone page: no scripts, no external resources).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    blocks = _blocks(frame)
    return _markdown(blocks) if fmt == "markdown" else _html(blocks)


def run_compare(
    tracking_uri: str,
    experiment: str,
    out: Path | None,
    fmt: str | None,
    filter_string: str,
    params: Mapping[str, str],
) -> int:
    """Write the report to ``out`` (atomically) or stdout; the format is ``fmt`` or ``out``'s
    suffix (``.md``/``.html``; Markdown otherwise).

    Returns 0; 1 when no execution matches; 2 for a bad format or filter. Messages go to stderr.
    """
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(out.suffix.lower(), "markdown") if out is not None else "markdown"
    if fmt not in FORMATS:
        sys.stderr.write(f"catdog compare: unknown format {fmt!r} (markdown or html)\n")
        return 2
    try:
        frame = collect_runs(
            tracking_uri, experiment, filter_string=filter_string, params=dict(params)
        )
    except Exception as error:  # MlflowException for a malformed filter, among others
        if not filter_string:
            raise
        sys.stderr.write(f"catdog compare: bad filter {filter_string!r}: {error}\n")
        return 2
    if frame.empty:
        what = [f"experiment {experiment!r} at {tracking_uri}"]
        if filter_string:
            what.append(f"filter {filter_string!r}")
        if params:
            what.append("params " + ", ".join(f"{k}={v}" for k, v in params.items()))
        message = f"catdog compare: no pipeline execution with an evaluate run in {'; '.join(what)}"
        hint = HOW_TO_MAKE_RUNS
        if "params." in filter_string:
            hint = "parent runs log no params: filter them with --param key=value instead"
        sys.stderr.write(f"{message}.\n  {hint}.\n")
        return 1
    text = render_report(frame, fmt=fmt)
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        sys.stderr.write(f"catdog compare: wrote {out} ({len(frame)} executions, {fmt})\n")
    return 0
