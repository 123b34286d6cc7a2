"""The comparison report reads executions logged in the shape flows/tracking.py logs them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from tests.conftest import table_rows
from tracking.compare import (
    METRICS,
    collect_runs,
    differing_params,
    render_report,
    run_compare,
)

MODELS = ("classifier", "finetune", "scratch")
T0 = 1_700_000_000_000  # ms


def _metrics(base: float) -> dict[str, float]:
    """Distinct, recognisable values: accuracy of model i is base + i/100."""
    out = {}
    for i, model in enumerate(MODELS):
        for j, metric in enumerate(METRICS):
            out[f"{model}_{metric}"] = round(base + i / 100 + j / 1000, 4)
    return out


STAGE_PARAMS = {
    "ingest": {"data.image_size": "180", "ingest.min_side": "32"},
    "classifier": {"data.image_size": "180", "classifier.epochs": "5", "seed": "42"},
    "evaluate": {"data.image_size": "180", "evaluate.threshold": "0.5"},
}


def _execution(
    client: MlflowClient,
    experiment_id: str,
    start: int,
    *,
    trigger: str,
    stages: dict[str, dict[str, str]],
    metrics: dict[str, float] | None,
    weights: str = "imagenet",
    commit: str = "0123456789abcdef0123456789abcdef01234567",
) -> str:
    """A parent run and one finished child per stage, as open_execution/stage_run log them."""
    parent = client.create_run(
        experiment_id,
        start_time=start,
        run_name=f"{trigger} {start}",
        tags={
            "catdog.execution": f"{trigger}:{start}",
            "catdog.trigger": trigger,
            "catdog.kind": "pipeline",
            "git.commit": commit,
            "git.dirty": "false",
            "dvc.exp_name": "",
            "weights": weights,
        },
    ).info.run_id
    for offset, (stage, params) in enumerate(stages.items(), start=1):
        child = client.create_run(
            experiment_id,
            start_time=start + offset * 1000,
            run_name=stage,
            tags={
                "mlflow.parentRunId": parent,
                "catdog.stage": stage,
                "catdog.trigger": trigger,
                "git.commit": commit,
                "weights": weights,
            },
        ).info.run_id
        values = metrics if stage == "evaluate" and metrics else {}
        client.log_batch(
            child,
            metrics=[Metric(k, v, start, 0) for k, v in values.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("dvc.data_raw", "abc.dir")],
        )
        client.set_terminated(child, "FINISHED", end_time=start + offset * 1000 + 500)
    client.set_terminated(parent, "FINISHED", end_time=start + 60_000)
    return parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One SQLite store (its creation is the slow part) with two experiments."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    ids: dict[str, str] = {"uri": uri}

    # "catdog": two full executions differing in classifier.epochs
    catdog = client.create_experiment("catdog")
    ids["old"] = _execution(
        client, catdog, T0, trigger="dvc repro", stages=STAGE_PARAMS, metrics=_metrics(0.7)
    )
    newer = {**STAGE_PARAMS, "classifier": {**STAGE_PARAMS["classifier"], "classifier.epochs": "8"}}
    ids["new"] = _execution(
        client, catdog, T0 + 3_600_000, trigger="catdog run", stages=newer, metrics=_metrics(0.8)
    )

    # "partial": a full execution, one that stopped before evaluate, one that re-ran only
    # classifier and evaluate (so ingest's params come from the first execution)
    partial = client.create_experiment("partial")
    ids["full"] = _execution(
        client,
        partial,
        T0,
        trigger="dvc repro",
        stages=STAGE_PARAMS,
        metrics=_metrics(0.5),
        weights="untrained",
    )
    ids["no_eval"] = _execution(
        client,
        partial,
        T0 + 1000_000,
        trigger="dvc repro",
        stages={"ingest": {**STAGE_PARAMS["ingest"], "ingest.min_side": "64"}},
        metrics=None,
        weights="untrained",
    )
    rerun = {k: v for k, v in newer.items() if k != "ingest"}
    ids["rerun"] = _execution(
        client,
        partial,
        T0 + 2000_000,
        trigger="catdog stage",
        stages=rerun,
        metrics=_metrics(0.6),
        weights="imagenet",
    )
    return ids


def test_collect_runs_rows_newest_first_with_metrics(store):
    frame = collect_runs(store["uri"], "catdog")
    assert list(frame["run_id"]) == [store["new"], store["old"]]
    assert list(frame["trigger"]) == ["catdog run", "dvc repro"]
    assert list(frame["git_commit"]) == ["0123456", "0123456"]
    assert list(frame["weights"]) == ["imagenet", "imagenet"]
    assert frame.loc[0, "started"] == "2023-11-14T23:13:20+00:00"
    assert frame.loc[0, "stages"] == "ingest,classifier,evaluate"
    assert frame.loc[0, "classifier.accuracy"] == pytest.approx(0.8)
    assert frame.loc[1, "scratch.roc_auc"] == pytest.approx(0.7 + 0.02 + 0.004)
    assert frame.loc[1, "finetune.log_loss"] == pytest.approx(0.7 + 0.01 + 0.005)
    assert list(frame["param:classifier.epochs"]) == ["8", "5"]
    assert differing_params(frame) == ["param:classifier.epochs"]
    assert len(collect_runs(store["uri"], "catdog", max_results=1)) == 1


def test_filters_select_executions(store):
    by_tag = collect_runs(
        store["uri"], "catdog", filter_string="tags.`catdog.trigger` = 'dvc repro'"
    )
    assert list(by_tag["run_id"]) == [store["old"]]
    by_param = collect_runs(store["uri"], "catdog", params={"classifier.epochs": "5"})
    assert list(by_param["run_id"]) == [store["old"]]
    assert collect_runs(store["uri"], "catdog", params={"classifier.epochs": "99"}).empty
    assert collect_runs(store["uri"], "catdog", params={"no.such.param": "1"}).empty


def test_skipped_stages_take_params_of_the_latest_earlier_run(store):
    frame = collect_runs(store["uri"], "partial")
    # the execution without an evaluate child is not a row, but its ingest params carry over
    assert list(frame["run_id"]) == [store["rerun"], store["full"]]
    assert list(frame["stages"]) == ["classifier,evaluate", "ingest,classifier,evaluate"]
    assert list(frame["param:ingest.min_side"]) == ["64", "32"]
    assert differing_params(frame) == ["param:classifier.epochs", "param:ingest.min_side"]
    one_blank = frame.copy()
    one_blank.loc[0, "param:seed"] = math.nan
    assert "param:seed" in differing_params(one_blank)


def test_markdown_report(store):
    frame = collect_runs(store["uri"], "catdog")
    text = render_report(frame)
    assert text.startswith("# catdog: 2 pipeline executions compared")
    rows = table_rows(text)
    for run_id, name in zip(frame["run_id"], frame["name"], strict=True):
        assert any(row[0] == f"{name} ({run_id[:8]})" for row in rows)
    for model in MODELS:
        assert any(model in row for row in rows)
    scratch_rows = [row for row in rows if "scratch" in row]
    assert len(scratch_rows) == 2
    assert all(row[-1] == "0.835" for row in scratch_rows)
    differing = table_rows(text.split("## Params that differ between executions")[1])
    assert differing[0] == ["execution", "classifier.epochs"]
    assert sorted(row[1] for row in differing[1:]) == ["5", "8"]
    assert "VGG16 weights: imagenet." in text and "near chance" not in text


def test_untrained_weights_are_called_out(store):
    frame = collect_runs(store["uri"], "partial")
    text = render_report(frame)
    assert "untrained (" in text and "imagenet (" in text
    assert "transfer-learning rows (classifier, finetune) are near chance" in text
    single = render_report(frame[frame["weights"] == "untrained"])
    assert "VGG16 weights: untrained. Warning: untrained VGG16" in single
    assert "Only one execution" in single


def test_html_report_is_standalone(store):
    page = render_report(collect_runs(store["uri"], "catdog"), fmt="html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", page)
    assert page.count("<table") == 3 and "0.835" in page
    with pytest.raises(ValueError, match="unknown report format"):
        render_report(collect_runs(store["uri"], "catdog"), fmt="pdf")


def test_run_compare_writes_by_suffix(store, tmp_path: Path, capsys):
    assert run_compare(store["uri"], "catdog", tmp_path / "r.html", None, "", {}) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert run_compare(store["uri"], "catdog", tmp_path / "r.md", None, "", {}) == 0
    assert (tmp_path / "r.md").read_text().startswith("# catdog")
    assert run_compare(store["uri"], "catdog", tmp_path / "x.html", "markdown", "", {}) == 0
    assert (tmp_path / "x.html").read_text().startswith("# catdog")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.md", "x.html"]
    capsys.readouterr()
    assert run_compare(store["uri"], "catdog", None, None, "", {"classifier.epochs": "8"}) == 0
    out = capsys.readouterr().out
    assert out.startswith("# catdog: 1 pipeline execution compared") and store["new"][:8] in out


def test_run_compare_without_executions(store, tmp_path: Path, capsys):
    assert run_compare(store["uri"], "nope", None, None, "", {}) == 1
    err = capsys.readouterr().err
    assert "no pipeline execution" in err and "dvc repro" in err and "catdog run" in err
    assert run_compare(store["uri"], "catdog", None, None, "", {"classifier.epochs": "1"}) == 1
    assert "classifier.epochs=1" in capsys.readouterr().err
    missing = tmp_path / "missing.db"
    assert run_compare(f"sqlite:///{missing}", "catdog", None, None, "", {}) == 1
    assert not missing.exists()  # not created by looking
    assert run_compare(store["uri"], "catdog", None, None, "params.seed = '42'", {}) == 1
    assert "--param" in capsys.readouterr().err
    assert run_compare(store["uri"], "catdog", None, None, "tags.x ~~ 'y'", {}) == 2
    assert "bad filter" in capsys.readouterr().err
