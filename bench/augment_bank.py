"""Augmented feature bank vs the book's in-model augmentation, measured in one run.

Both train the book's dense head on augmented views of the same training images:
  bank      augment (K views per image, once) + VGG16 features of them (once) + head, E epochs
            on the stored features: the head sees E*K augmented views per image;
  in-model  the frozen VGG16 inside the model, a fresh augmented view per image every epoch,
            E*K epochs: the same number of augmented views.
Reported: wall time of each and the ratio (goal: bank >= 5x faster), test accuracy of each
(goal: within 1 point; with untrained VGG16 weights both are near chance and say little).

Run: .venv/bin/python bench/augment_bank.py [--views 2] [--epochs 10] [-S key=value ...]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.conftest import make_project_copy  # noqa: E402


def stage(name: str, params: object, root: Path) -> float:
    from catdog.stage_table import stage as row

    task = getattr(importlib.import_module(f"tasks.{name}"), name)
    started = time.perf_counter()
    task.fn(root, **row(name).task_arguments(params))
    return time.perf_counter() - started


def test_accuracy(root: Path, params: object) -> float:
    import numpy as np

    from tasks.evaluate import predict_test_set

    test, probabilities = predict_test_set(root, params.data.image_size, params.evaluate.batch_size)
    y = (test["label"] == "dog").to_numpy()
    return float(np.mean((probabilities["classifier"] >= 0.5) == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    from catdog.params import load_params

    with tempfile.TemporaryDirectory(prefix="catdog-bench-bank-") as scratch:
        root = make_project_copy(Path(scratch) / "p", tiny=False)
        os.environ["KERAS_HOME"] = str(Path(scratch) / "keras")
        base = [*args.overrides, "features.weights=auto", f"augment.views={args.views}"]
        bank = load_params(root / "params.yaml", [*base, f"classifier.epochs={args.epochs}"])
        in_model = load_params(
            root / "params.yaml",
            [*base, "classifier.mode=in_model", f"classifier.epochs={args.epochs * args.views}"],
        )
        for name in ("ingest", "split"):
            stage(name, bank, root)
        bank_s = sum(stage(name, bank, root) for name in ("augment", "features", "classifier"))
        # finetune and scratch are not compared here; evaluate needs their models
        for name in ("finetune", "scratch"):
            stage(name, load_params(root / "params.yaml", [*base, f"{name}.epochs=1"]), root)
        bank_accuracy = test_accuracy(root, bank)
        in_model_s = stage("classifier", in_model, root)
        in_model_accuracy = test_accuracy(root, in_model)
        weights = (root / "data/features/meta.json").read_text()
    pretrained = '"pretrained": true' in weights
    print(
        f"{args.views} views per image, head sees {args.epochs * args.views} augmented views "
        f"per image either way; VGG16 weights {'ImageNet' if pretrained else 'UNTRAINED'}"
    )
    print(
        f"  bank (augment + features + head):  {bank_s:7.1f} s, test accuracy {bank_accuracy:.3f}"
    )
    print(
        f"  in-model ({args.epochs * args.views} epochs):            {in_model_s:7.1f} s,"
        f" test accuracy {in_model_accuracy:.3f}"
    )
    print(
        f"  bank is {in_model_s / bank_s:.1f}x faster (goal >= 5x); accuracy difference "
        f"{100 * abs(bank_accuracy - in_model_accuracy):.1f} points (goal <= 1)"
    )


if __name__ == "__main__":
    main()
