"""Compare pipeline executions recorded in MLflow: their test metrics with 95% intervals, a
ranking of the executions per model with paired tests, and the params that differ between them.

Each execution is a parent run (tag ``catdog.kind=pipeline``) with a child run per stage that ran
(see :mod:`catdog.tracking.runs`). An execution is reported when it has a finished
``evaluate`` child that logged metrics.

Params: an execution's params are those its own stages logged, completed, for every stage it
skipped (DVC found it up to date), by the most recent earlier execution that ran that stage
(across all executions of the experiment, whatever ``filter_string`` selects). This is exact for
``dvc repro`` / ``catdog run`` in one workspace; for experiments DVC runs in temporary copies it is
the best guess the store allows. The ``stages`` column names the stages each execution really ran.

Ranking: a few points of accuracy between two executions on a small test set are often luck. Two
executions scored on the same test images (their evaluate runs carry the same ``dvc.manifest``
hash) are compared image by image from the ``predictions/<model>.csv`` their evaluate runs logged:
only the images one gets right and the other wrong tell them apart (McNemar's exact test, see
:mod:`catdog.intervals`). Executions on other test images keep their own interval only.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from catdog.io import write_text
from catdog.report import interval_table, to_markdown
from catdog.stage_table import MODELS
from catdog.tracking.ranking import count_text, execution_label, rank_executions, ranking_blocks

__all__ = [
    "METRICS",
    "collect_runs",
    "differing_params",
    "render_report",
    "run_compare",
]

METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
PARAM_PREFIX = "param:"
KIND_FILTER = "tags.`catdog.kind` = 'pipeline'"
MANIFEST_TAG = "dvc.manifest"  # DVC's hash of the split manifest (tracking.lineage.DATA_TAGS)
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
EVALUATE_COLUMNS: tuple[str, ...] = ("evaluate_run_id", "test_split", "test_images")
METRIC_COLUMNS: tuple[str, ...] = tuple(f"{m}.{k}" for m in MODELS for k in METRICS)
INTERVAL_COLUMNS: tuple[str, ...] = tuple(
    f"{column}_{end}" for column in METRIC_COLUMNS for end in ("ci_low", "ci_high")
)
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
    return pd.DataFrame(
        columns=[*INFO_COLUMNS, *EVALUATE_COLUMNS, *METRIC_COLUMNS, *INTERVAL_COLUMNS]
    )


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
    ``exp_name``, ``weights``, ``stages`` (those the execution ran, comma-separated);
    ``evaluate_run_id``, ``test_split`` (DVC's hash of the split manifest, '' if not logged),
    ``test_images`` (NaN if not logged); ``<model>.<metric>``, then their 95% intervals
    ``<model>.<metric>_ci_low`` and ``_ci_high`` (NaN for executions logged without them), and
    ``param:<key>`` (sorted). ``filter_string`` (MLflow search syntax) selects parent runs;
    ``params`` keeps executions whose params (see the module docstring) have exactly these string
    values. An unknown experiment or a missing SQLite file gives an empty frame (the file is not
    created).
    """
    if _sqlite_missing(tracking_uri):
        return _empty_frame()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return _empty_frame()
    rows = _execution_rows(_search_all(client, found.experiment_id))
    if filter_string.strip():
        matching = _search_all(client, found.experiment_id, f"{KIND_FILTER} and {filter_string}")
        selected = {r.info.run_id for r in matching}
        rows = [row for row in rows if row["run_id"] in selected]
    return _frame(rows, params or {}, max_results)


def _stage_runs_by_parent(runs: list[Any]) -> dict[str, dict[str, Any]]:
    """Parent run id -> stage -> its latest finished child run, parents oldest first."""
    parents = sorted(
        (r for r in runs if r.data.tags.get("catdog.kind") == "pipeline"),
        key=lambda r: (r.info.start_time or 0, r.info.run_id),
    )
    ran: dict[str, dict[str, Any]] = {p.info.run_id: {} for p in parents}
    for child in sorted(runs, key=lambda r: r.info.start_time or 0):
        stages = ran.get(child.data.tags.get("mlflow.parentRunId", ""))
        if stages is not None and child.info.status == "FINISHED":
            stages[child.data.tags.get("catdog.stage") or child.info.run_name] = child
    return ran


def _execution_rows(runs: list[Any]) -> list[dict[str, Any]]:
    """A row per execution with an evaluate child that logged metrics, oldest first.

    Every execution, reported or not, passes the params of the stages it ran on to later ones.
    """
    parents = {r.info.run_id: r for r in runs}
    rows: list[dict[str, Any]] = []
    known: dict[str, dict[str, str]] = {}  # stage -> params of its latest finished run so far
    for parent_id, ran in _stage_runs_by_parent(runs).items():
        own = {stage: dict(child.data.params) for stage, child in ran.items()}
        effective: dict[str, str] = {}
        for stage_params in [*(known[s] for s in known if s not in own), *own.values()]:
            effective.update(stage_params)
        known.update(own)
        evaluate = ran.get("evaluate")
        if evaluate is None or not _has_metrics(evaluate):
            continue
        rows.append(
            {
                **_execution_info(parents[parent_id], evaluate, list(ran)),
                **_evaluation(evaluate),
                **{f"{PARAM_PREFIX}{k}": v for k, v in effective.items()},
            }
        )
    return rows


def _execution_info(parent: Any, evaluate: Any, stages: list[str]) -> dict[str, Any]:
    tags = parent.data.tags
    return {
        "run_id": parent.info.run_id,
        "name": parent.info.run_name or "",
        "started": _iso(parent.info.start_time),
        "status": parent.info.status,
        "trigger": tags.get("catdog.trigger", ""),
        "git_commit": _short_commit(tags),
        "exp_name": tags.get("dvc.exp_name", ""),
        "weights": evaluate.data.tags.get("weights") or tags.get("weights", ""),
        "stages": ",".join(stages),
    }


def _evaluation(evaluate: Any) -> dict[str, Any]:
    """The evaluate run's test split, its size, and every metric with its interval (NaN when
    not logged: executions from before intervals were recorded lack them)."""
    metrics = evaluate.data.metrics
    row: dict[str, Any] = {
        "evaluate_run_id": evaluate.info.run_id,
        "test_split": evaluate.data.tags.get(MANIFEST_TAG, ""),
        "test_images": float(metrics.get("test_images", math.nan)),
    }
    for column in (*METRIC_COLUMNS, *INTERVAL_COLUMNS):
        row[column] = float(metrics.get(column.replace(".", "_", 1), math.nan))
    return row


def _frame(rows: list[dict[str, Any]], params: Mapping[str, str], max_results: int) -> pd.DataFrame:
    """The rows (oldest first) as a frame, newest first, keeping those with the ``params``."""
    if not rows:
        return _empty_frame()
    frame = pd.DataFrame(rows)
    param_columns = sorted(c for c in frame.columns if c.startswith(PARAM_PREFIX))
    columns = [*INFO_COLUMNS, *EVALUATE_COLUMNS, *METRIC_COLUMNS, *INTERVAL_COLUMNS]
    frame = frame[[*columns, *param_columns]]
    for key, value in params.items():
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
    return [execution_label(n, r) for n, r in zip(frame["name"], frame["run_id"], strict=True)]


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


def _executions_blocks(frame: pd.DataFrame, labels: list[str]) -> list[tuple[str, Any]]:
    columns = ["started", "status", "trigger", "git_commit", "exp_name", "weights", "stages"]
    info = frame[columns].assign(test_split=frame["test_split"].fillna("").str[:8])
    info = info.set_axis(labels).rename_axis("execution")
    return [("h2", "Executions (newest first)"), ("table", info)]


def _model_metrics(row: pd.Series, model: str) -> dict[str, float]:
    """``{metric: value, metric_ci_low: ..., metric_ci_high: ...}`` of one model."""
    names = [*METRICS, *(f"{m}_{end}" for m in METRICS for end in ("ci_low", "ci_high"))]
    return {name: float(row[f"{model}.{name}"]) for name in names}


def _metrics_blocks(
    frame: pd.DataFrame, labels: list[str], models: Sequence[str]
) -> list[tuple[str, Any]]:
    parts: list[pd.DataFrame] = []
    without_intervals: list[str] = []
    for label, (_, row) in zip(labels, frame.iterrows(), strict=True):
        metrics = {m: _model_metrics(row, m) for m in models}
        metrics = {m: v for m, v in metrics.items() if any(math.isfinite(v[k]) for k in METRICS)}
        if not metrics:
            continue
        if not any(math.isfinite(v["accuracy_ci_low"]) for v in metrics.values()):
            without_intervals.append(label)
        table = interval_table(metrics, METRICS).reset_index()
        table.insert(1, "test images", count_text(row["test_images"]))
        table.index = pd.Index([label] * len(table), name="execution")
        parts.append(table)
    if not parts:
        return [("h2", "Test metrics"), ("p", f"No execution has metrics of {', '.join(models)}.")]
    blocks: list[tuple[str, Any]] = [
        ("h2", "Test metrics, with 95% intervals"),
        ("table", pd.concat(parts)),
        (
            "p",
            "book_accuracy: the test accuracy chapter 8 of Deep Learning with Python reports "
            "on Kaggle's photos (2,000 training images at 180x180), for reference.",
        ),
    ]
    if without_intervals:
        blocks.append(
            (
                "p",
                f"Intervals n/a for {', '.join(without_intervals)}: evaluated before intervals "
                "and predictions were logged, so no paired test either.",
            )
        )
    return [*blocks, ("p", _weights_line(frame, labels))]


def _params_blocks(frame: pd.DataFrame, labels: list[str]) -> list[tuple[str, Any]]:
    differing = differing_params(frame)
    blocks: list[tuple[str, Any]] = [("h2", "Params that differ between executions")]
    if len(frame) == 1:
        return [*blocks, ("p", "Only one execution: nothing to compare its params with.")]
    if not differing:
        return [*blocks, ("p", "None: every execution used the same params.")]
    table = frame[differing].fillna("").set_axis(labels).rename_axis("execution")
    table.columns = [c.removeprefix(PARAM_PREFIX) for c in differing]
    return [*blocks, ("table", table)]


def _blocks(
    frame: pd.DataFrame, rankings: Mapping[str, pd.DataFrame], models: Sequence[str]
) -> list[tuple[str, Any]]:
    """The report as (kind, content) blocks: ``h1``/``h2``/``p`` text or a ``table`` frame."""
    count = len(frame)
    title = f"catdog: {count} pipeline execution{'s' if count != 1 else ''} compared"
    if frame.empty:
        return [("h1", title), ("p", "No execution to compare.")]
    labels = _labels(frame)
    return [
        ("h1", title),
        *_executions_blocks(frame, labels),
        *_metrics_blocks(frame, labels, models),
        *ranking_blocks(rankings),
        *_params_blocks(frame, labels),
    ]


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


def render_report(
    frame: pd.DataFrame,
    *,
    fmt: str = "markdown",
    rankings: Mapping[str, pd.DataFrame] | None = None,
    model: str | None = None,
) -> str:
    """The comparison report: executions, one metrics row per execution and model with 95%
    intervals (and the book's test accuracy), the weights used, each model's ranking (from
    :func:`rank_executions`; none without ``rankings``), and the params that differ.

    ``fmt`` is ``markdown`` or ``html`` (a standalone page: no scripts, no external resources);
    ``model`` keeps one model's metrics only.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if model is not None and model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    blocks = _blocks(frame, rankings or {}, [model] if model else MODELS)
    return _markdown(blocks) if fmt == "markdown" else _html(blocks)


def run_compare(
    tracking_uri: str,
    experiment: str,
    out: Path | None,
    fmt: str | None,
    filter_string: str,
    params: Mapping[str, str],
    model: str | None = None,
) -> int:
    """Write the report to ``out`` (atomically) or stdout; the format is ``fmt`` or ``out``'s
    suffix (``.md``/``.html``; Markdown otherwise). ``model`` restricts it to one model.

    Returns 0; 1 when no execution matches; 2 for a bad format, model or filter. Messages go to
    stderr.
    """
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(out.suffix.lower(), "markdown") if out is not None else "markdown"
    if fmt not in FORMATS:
        sys.stderr.write(f"catdog compare: unknown format {fmt!r} (markdown or html)\n")
        return 2
    if model is not None and model not in MODELS:
        sys.stderr.write(f"catdog compare: unknown model {model!r} ({', '.join(MODELS)})\n")
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
        _say_nothing_matched(tracking_uri, experiment, filter_string, params)
        return 1
    rankings = rank_executions(frame, tracking_uri, [model] if model else MODELS)
    text = render_report(frame, fmt=fmt, rankings=rankings, model=model)
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        sys.stderr.write(f"catdog compare: wrote {out} ({len(frame)} executions, {fmt})\n")
    return 0


def _say_nothing_matched(
    tracking_uri: str, experiment: str, filter_string: str, params: Mapping[str, str]
) -> None:
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
