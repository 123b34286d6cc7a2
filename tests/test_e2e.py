"""End to end on a tiny configuration: real DVC, a real Prefect server, MLflow's own client."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from catdog.stage_table import MODELS, STAGE_NAMES
from tests.conftest import SHARED_PHOTOS, bin_dir, lock_outs, make_project_copy, run, table_rows

pytestmark = pytest.mark.e2e

DVC = str(bin_dir() / "dvc")
FIRST_REPRO: dict[str, dict[str, str]] = {}  # dvc.lock's outputs after the first `dvc repro`
TERMINAL: dict[str, str] = {}  # what each door printed, stdout and stderr together
CATDOG = str(bin_dir() / "catdog")


def ran_stages(output: str) -> list[str]:
    return [name for name in STAGE_NAMES if f"Running stage '{name}'" in output]


def mlflow_runs(project: Path) -> tuple[object, list[object]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("catdog")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    return client, runs


def set_param(project: Path, key: str, value: object) -> None:
    from catdog.workspace.params_file import apply_params

    apply_params(project, overrides=[f"{key}={value}"])


def dvc_status(project: Path, env: dict[str, str]) -> dict[str, object]:
    return json.loads(run([DVC, "status", "--json"], project, env).stdout)


@pytest.fixture(scope="module")
def repro_project(tmp_path_factory, prefect_api):
    """A project copy after one full `dvc repro`."""
    import os

    from tests.conftest import project_env

    project = make_project_copy(tmp_path_factory.mktemp("dvc") / "catdog")
    env = project_env(
        {
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": os.environ["PREFECT_HOME"],
            "KERAS_HOME": str(project.parent / "keras-home"),  # no ImageNet weights cached
        }
    )
    result = run([DVC, "repro"], project, env)
    assert ran_stages(result.stdout) == list(STAGE_NAMES), result.stdout[-3000:]
    FIRST_REPRO.update(lock_outs(project))  # later tests change params; compare with this
    TERMINAL["dvc repro"] = result.stdout + result.stderr
    return project, env


def test_dvc_repro_writes_every_output_metrics_and_plots(repro_project):
    project, env = repro_project
    metrics = json.loads(run([DVC, "metrics", "show", "--json"], project, env).stdout)
    flat = json.dumps(metrics)
    for model in ("classifier", "finetune", "scratch"):
        for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
            assert f'"{model}"' in flat and f'"{name}"' in flat
    doc = json.loads((project / "reports/metrics.json").read_text())
    assert doc["pretrained"] == int(doc["weights"] != "untrained")
    assert 0 <= doc["scratch"]["accuracy"] <= 1
    # every metric with its interval, and the models compared on the same images
    from catdog.intervals import wilson_interval

    images = doc["test_images"]
    for model in ("classifier", "finetune", "scratch"):
        right = round(doc[model]["accuracy"] * images)
        bounds = (doc[model]["accuracy_ci_low"], doc[model]["accuracy_ci_high"])
        assert bounds == pytest.approx(wilson_interval(right, images))
        assert (
            doc[model]["roc_auc_ci_low"] <= doc[model]["roc_auc"] <= doc[model]["roc_auc_ci_high"]
        )
    assert set(doc["pairs"]) == {
        "classifier_vs_finetune",
        "classifier_vs_scratch",
        "finetune_vs_scratch",
    }
    assert "accuracy_ci_low" in flat and "mcnemar_p" in flat  # `dvc metrics show` has them
    comparison = (project / "reports/comparison.md").read_text()
    assert f"{images} test images: a 95% interval is up to ±" in comparison
    low, high = (100 * b for b in bounds)
    assert f"[{low:.1f}, {high:.1f}]" in comparison  # scratch's accuracy interval
    assert "## Paired comparisons on the same" in comparison and "finetune − scratch" in comparison
    run([DVC, "plots", "show", "-o", "plots_out"], project, env)
    html = (project / "plots_out" / "index.html").read_text()
    assert "<script src=" not in html and "vegaEmbed" in html
    assert "confusion" in html and "reports/figures/evaluate/roc.png" in html.replace("%2F", "/")
    # where each model looked, and VGG16 from the inside: figures DVC lists with the plots
    for figure in (
        *(f"reports/figures/evaluate/gradcam_{m}.png" for m in MODELS),
        "reports/figures/filters/activations.png",
        "reports/figures/filters/patterns.png",
    ):
        assert (project / figure).stat().st_size > 10_000, figure
        assert figure in html.replace("%2F", "/"), figure


def test_mlflow_has_one_parent_with_a_child_per_stage(repro_project):
    import mlflow.pyfunc

    project, _ = repro_project
    client, runs = mlflow_runs(project)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["catdog.trigger"] == "dvc repro"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["catdog.stage"] for r in children) == sorted(STAGE_NAMES)
    assert all(r.info.run_name.startswith(r.data.tags["catdog.stage"] + " · ") for r in children)
    by_name = {r.data.tags["catdog.stage"]: r for r in children}
    for child in children:
        tags = child.data.tags
        assert len(tags["git.commit"]) == 40
        assert tags["dvc.data_raw"].endswith(".dir")
        assert len(tags["prefect.flow_run_id"]) == 36  # the stage's Prefect flow run (a UUID)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    raw_md5 = next(o["md5"] for o in lock["stages"]["ingest"]["outs"] if o["path"] == "data/raw")
    assert by_name["evaluate"].data.tags["dvc.data_raw"] == raw_md5
    # features.weights=auto with no cached ImageNet file and no network (OFFLINE): loud fallback
    features = by_name["features"].data.tags
    assert features["weights"] == "untrained"
    assert "UNTRAINED" in features["catdog.warning"]
    assert "UNTRAINED" in parent.data.tags["catdog.warning"]
    for child in children:  # every run says which weights it was made with
        assert child.data.tags["weights.requested"] == "auto"
    assert {by_name[n].data.tags["weights"] for n in ("classifier", "finetune", "evaluate")} == {
        features["weights"]
    }
    assert by_name["classifier"].data.params["classifier.epochs"] == "2"
    history = client.get_metric_history(by_name["classifier"].info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1]
    evaluated = by_name["evaluate"].data.metrics
    doc = json.loads((project / "reports/metrics.json").read_text())
    assert evaluated["scratch_accuracy_ci_low"] == pytest.approx(doc["scratch"]["accuracy_ci_low"])
    assert evaluated["finetune_vs_scratch_mcnemar_p"] == pytest.approx(
        doc["pairs"]["finetune_vs_scratch"]["mcnemar_p"]
    )
    assert evaluated["test_images"] == doc["test_images"]
    listed = client.list_artifacts(by_name["evaluate"].info.run_id, "predictions")
    assert sorted(Path(a.path).name for a in listed) == [
        "classifier.csv",
        "finetune.csv",
        "scratch.csv",
    ]
    evaluate_run = by_name["evaluate"].info.run_id
    figures = {Path(a.path).name for a in client.list_artifacts(evaluate_run, "plots")}
    assert {f"gradcam_{m}.png" for m in MODELS} <= figures
    for model in MODELS:  # beside each model, in its own run
        listed = client.list_artifacts(by_name[model].info.run_id, "gradcam")
        assert [Path(a.path).name for a in listed] == [f"gradcam_{model}.png"]
    filters_run = by_name["filters"].info.run_id
    inside = {Path(a.path).name for a in client.list_artifacts(filters_run, "plots")}
    assert {"activations.png", "patterns.png"} <= inside
    assert "untrained" in by_name["filters"].data.tags["catdog.warning"]
    # each model stage logged a model that MLflow's pyfunc loads and predicts with
    models = client.search_logged_models([parent.info.experiment_id])
    assert {m.source_run_id for m in models} >= {
        by_name[n].info.run_id for n in ("classifier", "finetune", "scratch")
    }
    scratch = next(m for m in models if m.source_run_id == by_name["scratch"].info.run_id)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        loaded = mlflow.pyfunc.load_model(scratch.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    image = np.zeros((2, 80, 80, 3), dtype="float32")
    prediction = np.asarray(loaded.predict(image)).reshape(-1)
    assert prediction.shape == (2,) and np.all((prediction >= 0) & (prediction <= 1))


def test_second_repro_is_up_to_date_and_classifier_change_reruns_only_downstream(repro_project):
    project, env = repro_project
    again = run([DVC, "repro"], project, env)
    assert ran_stages(again.stdout) == []
    set_param(project, "classifier.epochs", 3)
    status = run([DVC, "status", "--json"], project, env).stdout
    assert list(json.loads(status)) == ["classifier"]  # the others follow once it has run
    rerun = run([DVC, "repro"], project, env)
    assert ran_stages(rerun.stdout) == ["classifier", "finetune", "evaluate"]
    _, runs = mlflow_runs(project)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    newest = max(parents, key=lambda r: r.info.start_time)
    children = [
        r.data.tags["catdog.stage"]
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == newest.info.run_id
    ]
    assert sorted(children) == ["classifier", "evaluate", "finetune"]


def test_catdog_run_finds_nothing_to_do_after_dvc_repro_from_any_folder(repro_project):
    project, env = repro_project
    result = run([CATDOG, "run"], project / "reports" / "figures", env)  # a subfolder works too
    assert "ran: nothing (all up to date)" in result.stdout
    assert dvc_status(project, env) == {}


def test_a_value_a_stage_rejects_under_dvc_exp_run_loses_no_output(repro_project):
    project, env = repro_project
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    run([*git, "commit", "-qam", "the state the experiment starts from"], project, env)
    result = run([DVC, "exp", "run", "-S", "scratch.epochs=-1"], project, env, check=False)
    assert result.returncode != 0
    assert (
        "catdog: error: params.yaml: scratch.epochs: Input should be greater than or equal to 1"
        in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout
    # DVC removed scratch's outputs before running it; the README's undo brings all of them back
    run(["git", "checkout", "params.yaml"], project, env)
    run([DVC, "checkout"], project, env)
    assert dvc_status(project, env) == {}
    for path in ("models/scratch.keras", "reports/history/scratch.csv"):
        assert (project / path).is_file()
    assert (project / "reports/figures/scratch_history.png").is_file()


@pytest.fixture(scope="module")
def run_project(tmp_path_factory, repro_project):
    """Another clone, at another path, after one full `catdog run`."""
    _, env = repro_project
    project = make_project_copy(tmp_path_factory.mktemp("elsewhere") / "deeper" / "catdog")
    first = run([CATDOG, "run"], project, env)
    assert "ran: " + ", ".join(STAGE_NAMES) in first.stdout
    TERMINAL["catdog run"] = first.stdout + first.stderr
    return project, env


def test_catdog_run_records_in_dvc_lock_so_dvc_repro_finds_nothing_to_do(run_project):
    project, env = run_project
    assert dvc_status(project, env) == {}
    again = run([DVC, "repro"], project, env)
    assert ran_stages(again.stdout) == [] and "Data and pipelines are up to date" in again.stdout


def test_a_quiet_terminal_whichever_door(run_project):
    """No library warning the project can prevent; the untrained-weights warning from two stages."""
    assert set(TERMINAL) == {"dvc repro", "catdog run"}
    for door, text in TERMINAL.items():
        python_warnings = re.findall(r"^.*\b\w*Warning: .*$", text, flags=re.MULTILINE)
        assert python_warnings == [], door
        assert "retracing" not in text, door
        # said once by the stage that chose the weights, once by the one that reports results
        warned = re.findall(r" - (\w+): .*UNTRAINED conv base", text)
        assert warned == ["features", "evaluate"], door
        for stage in STAGE_NAMES:  # a line per stage with its time
            assert re.search(rf" - {stage}: done in \d+\.\d s", text), (door, stage)


def test_both_doors_in_clones_at_different_paths_give_the_same_bytes(repro_project, run_project):
    by_dvc, by_catdog = FIRST_REPRO, lock_outs(run_project[0])
    assert list(by_dvc) == list(STAGE_NAMES)
    for stage in STAGE_NAMES:  # every output of every stage, by DVC's own hash
        assert by_catdog[stage] == by_dvc[stage], stage


def test_catdog_run_writes_overrides_into_params_yaml_as_dvc_exp_run_does(run_project):
    project, env = run_project
    result = run([CATDOG, "run", "-S", "classifier.epochs=3"], project, env)
    assert "ran: classifier, finetune, evaluate" in result.stdout
    assert "catdog: params.yaml: wrote -S classifier.epochs=3" in result.stderr
    assert yaml.safe_load((project / "params.yaml").read_text())["classifier"]["epochs"] == 3
    assert dvc_status(project, env) == {}
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["classifier"]["params"]["params.yaml"]["classifier"]["epochs"] == 3
    _, runs = mlflow_runs(project)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and all(p.data.tags["catdog.trigger"] == "catdog run" for p in parents)


def test_dvc_push_after_catdog_run_then_pull_into_a_fresh_clone(run_project, tmp_path):
    project, env = run_project
    remote = tmp_path / "remote"
    run([DVC, "remote", "add", "-d", "shared", str(remote)], project, env)
    run([DVC, "push"], project, env)
    run(["git", "add", "-A"], project, env)
    run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"],
        project,
        env,
    )
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    run([DVC, "pull"], clone, env)
    for stage in STAGE_NAMES:
        for path in lock_outs(project)[stage]:
            assert (clone / path).exists(), path
    assert dvc_status(clone, env) == {}  # the pulled bytes hash as dvc.lock says
    again = run([DVC, "repro"], clone, env)
    assert ran_stages(again.stdout) == []
    assert "ran: nothing" in run([CATDOG, "run"], clone, env).stdout


def test_catdog_predict_gives_the_probability_evaluate_gave(repro_project):
    project, env = repro_project
    evaluated = pd.read_csv(project / "reports/predictions/finetune.csv").head(3)
    result = run([CATDOG, "predict", *evaluated["path"]], project, env)
    predicted = pd.read_csv(io.StringIO(result.stdout))
    assert list(predicted["path"]) == list(evaluated["path"])
    np.testing.assert_allclose(predicted["prob_dog"], evaluated["prob_dog"], atol=2e-6)


def test_catdog_explain_shows_where_the_champion_looked_on_shared_photos(repro_project):
    project, env = repro_project
    select = SHARED_PHOTOS.parent / "dogs-vs-cats-200px" / "select"  # never report/: kept unseen
    photos = [select / f"{label}.{n}.jpg" for label in ("cat", "dog") for n in (3000, 3001)]
    if not all(p.is_file() for p in photos):
        pytest.skip(f"the shared photos are not at {select}")
    champion = "models:/catdog@champion"
    explain = [CATDOG, "explain", *map(str, photos), "--model", champion, "--out", "seen"]
    explained = pd.read_csv(io.StringIO(run(explain, project, env).stdout))
    predict = [CATDOG, "predict", *map(str, photos), "--model", champion]
    predicted = pd.read_csv(io.StringIO(run(predict, project, env).stdout))
    np.testing.assert_allclose(explained["prob_dog"], predicted["prob_dog"], atol=2e-6)
    for photo, overlay in zip(photos, explained["heatmap"], strict=True):
        with Image.open(photo) as original, Image.open(project / overlay) as shown:
            assert shown.size == original.size  # 200 px photos keep their size
    assert (project / "seen" / "explain.csv").is_file()


def test_catdog_compare_reads_the_executions_from_mlflow(repro_project):
    project, env = repro_project
    run([CATDOG, "compare", "--out", "report.md"], project, env)
    report = (project / "report.md").read_text()
    assert "dvc repro" in report and "83.5%" in report
    rows = table_rows(report)
    assert all(any(model in row for row in rows) for model in ("classifier", "finetune", "scratch"))
    # the differing-params table agrees with what MLflow holds (tests earlier in this file
    # change classifier.epochs; run alone, there is a single execution)
    _, runs = mlflow_runs(project)
    epochs = {
        r.data.params["classifier.epochs"]
        for r in runs
        if r.data.tags.get("catdog.stage") == "classifier"
    }
    if len(epochs) > 1:
        assert any(row[0] == "execution" and "classifier.epochs" in row for row in rows)
    else:
        assert "Only one execution" in report or "every execution used the same params" in report


def test_our_scratch_recipe_through_catdog_run_params_best_predict_and_compare(run_project):
    """`catdog run --params params-best.yaml` (tiny sizes): the mini-Xception in bfloat16 trains,
    is logged, predicts what evaluate scored, and `catdog compare` shows the arch that differs."""
    from tests.conftest import REPO, TINY_PARAMS

    project, env = run_project
    current = yaml.safe_load((project / "params.yaml").read_text())
    sizes = {
        **TINY_PARAMS,
        "classifier.epochs": current["classifier"]["epochs"],  # as earlier tests left it
        "scratch.epochs": 2,
        "scratch.warmup_epochs": 1,
    }
    overrides = [f"-S{key}={value}" for key, value in sizes.items()]
    preset = str(REPO / "params-best.yaml")
    result = run([CATDOG, "run", "--params", preset, *overrides], project, env)
    ran = re.search(r"^ran: (.*)$", result.stdout, flags=re.MULTILINE).group(1).split(", ")
    assert "scratch" in ran and "evaluate" in ran
    assert not {"ingest", "split", "augment", "features"} & set(ran)  # only what changed
    written = yaml.safe_load((project / "params.yaml").read_text())["scratch"]
    assert (written["arch"], written["compute"], written["keep"]) == (
        "xception",
        "mixed_bfloat16",
        "last",
    )
    assert dvc_status(project, env) == {}

    evaluated = pd.read_csv(project / "reports/predictions/scratch.csv").head(4)
    predict = [CATDOG, "predict", "--model", "models/scratch.keras", *evaluated["path"]]
    predicted = pd.read_csv(io.StringIO(run(predict, project, env).stdout))
    np.testing.assert_allclose(predicted["prob_dog"], evaluated["prob_dog"], atol=2e-6)

    _, runs = mlflow_runs(project)
    newest = max(
        (r for r in runs if r.data.tags.get("catdog.stage") == "scratch"),
        key=lambda r: r.info.start_time,
    )
    assert newest.data.params["scratch.arch"] == "xception"
    assert newest.info.status == "FINISHED"
    run([CATDOG, "compare", "--out", "report.md"], project, env)
    report = (project / "report.md").read_text()
    rows = table_rows(report)  # the params that differ between executions are its columns
    assert any(row[0] == "execution" and "scratch.arch" in row for row in rows)
    assert any("xception" in row and "book" not in row for row in rows)
