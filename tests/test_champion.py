"""The champion on the default pipeline: a gain within the noise keeps it, a real one moves it.

Three `catdog run`s of the default configuration (150 cartoons per class, 60 test images, the
offline untrained VGG16), changing only how long the from-scratch convnet trains. The pipeline is
byte-deterministic, so the executions' accuracies are fixed; the test still checks the premise
of each step (a higher point estimate, then a clearly better model) before the decision.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import bin_dir, make_project_copy, run

pytestmark = pytest.mark.e2e

CATDOG = str(bin_dir() / "catdog")


def evaluate_tags(project: Path) -> dict[str, str]:
    """The tags of the newest evaluate run, read back from MLflow."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("catdog")
    newest = client.search_runs(
        [experiment.experiment_id],
        "tags.`catdog.stage` = 'evaluate'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    return newest.data.tags


def champion_source(project: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    return client.get_model_version_by_alias("catdog", "champion").tags["catdog.source"]


def test_the_champion_moves_on_evidence_not_on_luck(tmp_path, e2e_env):
    project = make_project_copy(
        tmp_path / "catdog", {"features.weights": "none", "scratch.epochs": 2}, tiny=False
    )
    run([CATDOG, "run"], project, e2e_env)
    first = evaluate_tags(project)
    assert first["champion.decision"] == "first"
    champion = champion_source(project)

    # a little more training: more accurate on these 60 images, but not by more than luck
    result = run([CATDOG, "run", "-S", "scratch.epochs=4"], project, e2e_env)
    kept = evaluate_tags(project)
    gain = float(kept["champion.challenger_accuracy"]) - float(kept["champion.incumbent_accuracy"])
    assert gain > 0, f"the premise: a higher point estimate ({kept})"
    assert kept["champion.decision"] == "kept", kept["champion.decision.text"]
    assert kept["champion.rule"] == "paired-test"
    assert float(kept["champion.p_value"]) >= 0.05
    assert "(a gain within the noise)" in kept["champion.decision.text"]
    assert champion_source(project) == champion
    assert f"evaluate: {kept['champion.decision.text']}" in result.stdout + result.stderr

    # the book's 20 epochs: a model that is right far more often on the same images
    run([CATDOG, "run", "-S", "scratch.epochs=20"], project, e2e_env)
    moved = evaluate_tags(project)
    assert moved["champion.decision"] == "moved", moved["champion.decision.text"]
    assert float(moved["champion.p_value"]) < 0.05
    wins, losses = (int(part.split()[0]) for part in moved["champion.discordant"].split(", "))
    assert wins > losses
    assert champion_source(project) == moved["champion.challenger"]
    assert moved["champion.challenger"].startswith("catdog-scratch/")
