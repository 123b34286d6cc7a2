"""The comparison report reads executions logged in the shape catdog/tracking/runs.py logs them."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from catdog.intervals import mcnemar_exact, wilson_interval
from catdog.stage_table import MODELS
from catdog.tracking.compare import (
    METRICS,
    collect_runs,
    differing_params,
    render_report,
    run_compare,
)
from catdog.tracking.ranking import NOT_COMPARABLE, rank_executions
from tests.conftest import table_rows

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
    evaluate_tags: dict[str, str] | None = None,
    predictions: Sequence[Path] = (),
) -> str:
    """A parent run and one finished child per stage, as open_execution/stage_run log them;
    the evaluate child also gets ``evaluate_tags`` and the ``predictions`` files as artifacts."""
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
        evaluate = stage == "evaluate"
        values = metrics if evaluate and metrics else {}
        tags = {"dvc.data_raw": "abc.dir", **((evaluate_tags or {}) if evaluate else {})}
        client.log_batch(
            child,
            metrics=[Metric(k, v, start, 0) for k, v in values.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        for path in predictions if evaluate else ():
            client.log_artifact(child, str(path), "predictions")
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
    ids.update(_sweep(client, tmp_path_factory.mktemp("sweep")))
    return ids


# "sweep": executions of scratch on the same 60 test images (manifest "m1") unless said. The best
# gets images 0-44 right (75.0%). "worse" loses 12 of them (0-11) and gains 3 (45-47): 36 right,
# and McNemar's exact test on 3 against 12 gives p = 2 * P(X <= 3 | 15, 1/2) = 2 * 576 / 2**15
# = 0.0352 (one-sided 0.0176). "close" loses 3 and gains 2: 44 right, p = 1.
IMAGES = 60
BEST_RIGHT = set(range(45))
SWEEP = {  # name: (images right, manifest, what its evaluate run logged)
    "best": (BEST_RIGHT, "m1", "all"),
    "close": ((BEST_RIGHT - {0, 1, 2}) | {45, 46}, "m1", "all"),
    "worse": ((BEST_RIGHT - set(range(12))) | {45, 46, 47}, "m1", "all"),
    "elsewhere": (set(range(42)), "m2", "all"),  # 70.0%: 42 of 60 other images
    "renamed": (set(range(40)), "m1", "other paths"),  # same hash, other file names
    "older": (set(range(30)), "m1", "no intervals"),  # 50.0%, from before intervals
}


def _predictions_csv(path: Path, right: set[int], prefix: str = "img") -> Path:
    """``path,actual,predicted,prob_dog`` for the 60 images, rows in reverse: paired by path."""
    actual = np.array(["cat", "dog"] * (IMAGES // 2))
    hit = np.isin(np.arange(IMAGES), sorted(right))
    predicted = np.where(hit, actual, np.where(actual == "cat", "dog", "cat"))
    frame = pd.DataFrame(
        {
            "path": [f"data/raw/{a}/{prefix}{i:02d}.png" for i, a in enumerate(actual)],
            "actual": actual,
            "predicted": predicted,
            "prob_dog": np.where(predicted == "dog", 0.9, 0.1),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.iloc[::-1].to_csv(path, index=False)
    return path


def _sweep_metrics(right: int, total: int, intervals: bool) -> dict[str, float]:
    metrics = {"scratch_accuracy": right / total, "scratch_roc_auc": 0.812}
    if intervals:
        low, high = wilson_interval(right, total)
        metrics |= {"scratch_accuracy_ci_low": low, "scratch_accuracy_ci_high": high}
        metrics |= {"scratch_roc_auc_ci_low": 0.7, "scratch_roc_auc_ci_high": 0.91}
        metrics["test_images"] = total
    return metrics


def _sweep(client: MlflowClient, folder: Path) -> dict[str, str]:
    experiment = client.create_experiment("sweep", artifact_location=(folder / "a").as_uri())
    ids = {}
    for i, (name, (right, manifest, logged)) in enumerate(SWEEP.items()):
        csv = folder / name / "scratch.csv"
        _predictions_csv(csv, right, prefix="other" if logged == "other paths" else "img")
        ids[name] = _execution(
            client,
            experiment,
            T0 + i * 60_000,
            trigger="dvc exp run",
            stages={"evaluate": {"seed": str(i)}},
            metrics=_sweep_metrics(len(right), IMAGES, logged != "no intervals"),
            evaluate_tags={"dvc.manifest": manifest},
            predictions=[] if logged == "no intervals" else [csv],
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
    assert all(row[-1] == "83.5%" for row in scratch_rows)
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
    assert page.count("<table") == 3 and "83.5%" in page
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


def test_collect_runs_reads_intervals_test_split_and_size(store):
    frame = collect_runs(store["uri"], "sweep").set_index("name")
    best = frame.loc[f"dvc exp run {T0}"]
    assert (best["test_split"], best["test_images"]) == ("m1", 60)
    assert best["scratch.accuracy"] == pytest.approx(0.75)
    assert best["scratch.accuracy_ci_low"] == pytest.approx(0.6277, abs=1e-4)
    assert best["scratch.accuracy_ci_high"] == pytest.approx(0.8422, abs=1e-4)
    assert best["scratch.roc_auc_ci_high"] == pytest.approx(0.91)
    assert math.isnan(best["finetune.accuracy_ci_low"])  # a model it did not score
    older = frame.loc[f"dvc exp run {T0 + 5 * 60_000}"]
    assert math.isnan(older["test_images"]) and math.isnan(older["scratch.accuracy_ci_low"])
    assert collect_runs(store["uri"], "catdog")["test_split"].tolist() == ["", ""]


def test_ranking_pairs_the_executions_on_the_same_test_images(store):
    frame = collect_runs(store["uri"], "sweep")
    rankings = rank_executions(frame, store["uri"])
    assert list(rankings) == ["scratch"]  # the only model these executions scored
    ranking = rankings["scratch"].set_index("run_id")
    ranked = ["best", "close", "elsewhere", "renamed", "worse", "older"]  # by accuracy
    assert list(ranking.index) == [store[name] for name in ranked]
    assert list(ranking["rank"]) == [1, 2, 3, 4, 5, 6]
    worse = ranking.loc[store["worse"], "pair"]
    assert (worse.first_only, worse.second_only, worse.images) == (3, 12, 60)
    assert worse.difference == pytest.approx(-0.15)
    assert worse.p_value == pytest.approx(0.0352, abs=1e-4)
    assert mcnemar_exact(3, 12, "less") == pytest.approx(0.0176, abs=1e-4)  # one-sided
    assert worse.ci_low < worse.difference < worse.ci_high < 0
    close = ranking.loc[store["close"], "pair"]
    assert (close.first_only, close.second_only, close.p_value) == (2, 3, 1.0)
    verdicts = ranking["verdict"]
    assert verdicts[store["best"]] == "the most accurate"
    assert verdicts[store["worse"]] == "worse than the best: p = 0.0352"
    assert verdicts[store["close"]] == "not distinguishable from the best: p = 1"
    assert verdicts[store["elsewhere"]] == NOT_COMPARABLE
    assert verdicts[store["renamed"]] == (
        "predictions for other images than the best's: no paired test"
    )
    assert "no predictions logged" in verdicts[store["older"]]
    unpaired = ["best", "elsewhere", "renamed", "older"]
    assert ranking.loc[[store[n] for n in unpaired], "pair"].isna().all()
    assert rank_executions(frame, store["uri"], ["finetune"]) == {}


def _ranking_rows(text: str) -> dict[str, list[str]]:
    section = text.split("## Ranking of scratch (paired on the same test images)")[1]
    section = section.split("## ")[0]
    rows = table_rows(section)
    assert rows[0] == [
        "execution",
        "rank",
        "test images",
        "accuracy",
        "vs the best (points)",
        "only this right",
        "only the best right",
        "verdict",
    ]
    return {row[0].split(" (")[0].removeprefix("dvc exp run "): row[1:] for row in rows[1:]}


def test_markdown_report_shows_intervals_and_the_ranking(store, tmp_path: Path):
    assert run_compare(store["uri"], "sweep", tmp_path / "sweep.md", None, "", {}) == 0
    text = (tmp_path / "sweep.md").read_text()
    best_label = f"dvc exp run {T0} ({store['best'][:8]})"
    metrics = [row for row in table_rows(text) if row[:2] == [best_label, "scratch"]]
    assert len(metrics) == 1  # one model with metrics, so one row per execution
    _, _, images, accuracy, *_, roc_auc, _log_loss, book = metrics[0]
    assert (images, accuracy, roc_auc, book) == (
        "60",
        "75.0% [62.8, 84.2]",
        "0.812 [0.700, 0.910]",
        "83.5%",
    )
    assert f"Intervals n/a for dvc exp run {T0 + 5 * 60_000}" in text
    assert "60 test images: a 95% interval is up to ±12 points" in text
    assert text.count("## Ranking of") == 1
    rows = _ranking_rows(text)
    assert rows[str(T0)][:4] == ["1", "60", "75.0% [62.8, 84.2]", ""]
    worse = rows[str(T0 + 2 * 60_000)]
    assert worse[0] == "5" and worse[3].startswith("-15.0 [")
    assert worse[4:] == ["3", "12", "worse than the best: p = 0.0352"]
    assert rows[str(T0 + 60_000)][4:] == ["2", "3", "not distinguishable from the best: p = 1"]
    elsewhere = rows[str(T0 + 3 * 60_000)]
    assert elsewhere[2] == "70.0% [57.5, 80.1]" and elsewhere[-1] == NOT_COMPARABLE
    assert rows[str(T0 + 5 * 60_000)][2] == "50.0%"  # no interval logged: none made up


def test_html_report_shows_the_ranking(store, tmp_path: Path):
    assert run_compare(store["uri"], "sweep", tmp_path / "sweep.html", None, "", {}) == 0
    page = (tmp_path / "sweep.html").read_text()
    assert "<h2>Ranking of scratch (paired on the same test images)</h2>" in page
    assert "<td>75.0% [62.8, 84.2]</td>" in page
    assert "<td>worse than the best: p = 0.0352</td>" in page
    assert f"<td>{NOT_COMPARABLE}</td>" in page
    assert page.count("<table") == 4 and "<script" not in page


def test_run_compare_for_one_model(store, tmp_path: Path, capsys):
    assert run_compare(store["uri"], "catdog", None, None, "", {}, model="finetune") == 0
    text = capsys.readouterr().out
    rows = table_rows(text)
    assert any("finetune" in row for row in rows)
    assert not any("scratch" in row or "classifier" in row for row in rows)
    assert "## Ranking of finetune" in text and "## Ranking of scratch" not in text
    assert "test split not logged: no paired test" in text  # logged before the manifest tag
    assert run_compare(store["uri"], "sweep", None, None, "", {}, model="finetune") == 0
    assert "No execution has metrics of finetune." in capsys.readouterr().out
    assert run_compare(store["uri"], "sweep", None, None, "", {}, model="dogs") == 2
    assert "unknown model 'dogs'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model"):
        render_report(collect_runs(store["uri"], "sweep"), model="dogs")
