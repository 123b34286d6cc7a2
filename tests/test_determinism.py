"""Same seed, data and params: two CPU runs give identical split, features and metrics."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from catdog import stage_table
from catdog import vocabulary as vocab
from catdog.workspace.params_file import resolve_params
from tests.conftest import REPO, TINY_PARAMS

pytestmark = pytest.mark.e2e


def run_all_stages(workspace: Path) -> None:
    import importlib

    (workspace / "catdog").mkdir(parents=True)
    shutil.copy(REPO / "catdog" / "synthetic.py", workspace / "catdog" / "synthetic.py")
    overrides = [f"{k}={v}" for k, v in {**TINY_PARAMS, "features.weights": "none"}.items()]
    params = resolve_params(REPO / "params.yaml", overrides)[0]
    for name in stage_table.STAGE_NAMES:
        module, function = stage_table.stage(name).task
        task = getattr(importlib.import_module(module), function)
        arguments = stage_table.stage(name).task_arguments(params)
        task.fn(workspace, **arguments)  # the task's own code, without a Prefect run around it


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
    for model in stage_table.MODELS:
        history = vocab.history_path(model)
        assert (first / history).read_text() == (second / history).read_text(), model
