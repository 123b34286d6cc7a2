"""Same seed, data and params: two CPU runs give identical split, features and metrics."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from catdog import vocabulary as vocab
from catdog.workspace.params_file import resolve_params
from tests.conftest import REPO, TINY_PARAMS

pytestmark = pytest.mark.e2e

STAGES = ("ingest", "split", "augment", "features", "classifier", "scratch", "finetune", "evaluate")


def run_all_stages(workspace: Path) -> None:
    import importlib

    (workspace / "catdog").mkdir(parents=True)
    shutil.copy(REPO / "catdog" / "synthetic.py", workspace / "catdog" / "synthetic.py")
    overrides = [f"{k}={v}" for k, v in {**TINY_PARAMS, "features.weights": "none"}.items()]
    params = resolve_params(REPO / "params.yaml", overrides)[0]
    for name in STAGES:
        task = getattr(importlib.import_module(f"tasks.{name}"), name)
        task.fn(params, workspace)  # the task's own code, without a Prefect run around it


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_runs_give_identical_split_features_and_metrics(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    run_all_stages(first)
    run_all_stages(second)
    assert digest(first / vocab.MANIFEST) == digest(second / vocab.MANIFEST)
    for name in ("train", "validation", "test", "train_aug"):
        file = f"{vocab.FEATURES_DIR}/{name}.npy"
        assert digest(first / file) == digest(second / file), file
    assert (first / vocab.METRICS).read_text() == (second / vocab.METRICS).read_text()
    for model in vocab.MODELS:
        history = vocab.history_path(model)
        assert (first / history).read_text() == (second / history).read_text(), model
