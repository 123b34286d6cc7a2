"""What Grad-CAM costs evaluate: the evaluate task with its heatmaps on and off, in one run.

The stages before evaluate run once, as plain task functions in this process, in a fresh copy of
the project: on the default pipeline, and on the shared photos (``--photos``, a few per class, at
the book's 180 px) unless ``--default-only``. Then evaluate runs ``--repeats`` times with
``evaluate.gradcam`` at its default and at 0, alternating, and the ratio of the medians is printed.

Run: .venv/bin/python bench/gradcam.py [--photos DIR] [--repeats 3] [--default-only]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.conftest import SHARED_PHOTOS, make_project_copy  # noqa: E402

# The shared photos at the book's size, few enough to prepare in minutes on two cores: the test
# split (200 per class) is what evaluate predicts and explains.
PHOTOS_PARAMS = {
    "data.image_size": 180,
    "split.counts": "[100,50,200]",
    "augment.views": 1,
    "classifier.epochs": 2,
    "finetune.epochs": 1,
    "scratch.epochs": 2,
}


def prepare(project: Path) -> None:
    """Every stage before evaluate, as plain task functions."""
    from catdog.params import load_params
    from catdog.stage_table import STAGES

    params = load_params(project / "params.yaml")
    for row in STAGES[:-1]:
        module, function = row.task
        getattr(importlib.import_module(module), function).fn(project, **row.task_arguments(params))


def evaluate_seconds(project: Path, gradcam: int) -> float:
    from catdog.params import load_params
    from tasks.evaluate import evaluate

    params = load_params(project / "params.yaml")
    chosen = params.evaluate.model_copy(update={"gradcam": gradcam})
    started = time.perf_counter()
    evaluate.fn(project, data=params.data, evaluate=chosen)
    return time.perf_counter() - started


def measure(label: str, project: Path, repeats: int) -> None:
    from catdog.manifest import read_manifest, split_rows
    from catdog.params import EvaluateParams
    from catdog.vocabulary import MANIFEST

    started = time.perf_counter()
    prepare(project)
    prepared = time.perf_counter() - started
    default = EvaluateParams().gradcam
    on, off = [], []
    for _ in range(repeats):  # alternating: a slow spell of the machine hits both
        on.append(evaluate_seconds(project, default))
        off.append(evaluate_seconds(project, 0))
    test = len(split_rows(read_manifest(project / MANIFEST), "test"))
    with_s, without_s = statistics.median(on), statistics.median(off)
    print(
        f"{label}: {test} test images, stages before evaluate {prepared:.0f} s; evaluate with "
        f"Grad-CAM ({default} mistakes + {default // 2} right per model) {with_s:.1f} s, without "
        f"{without_s:.1f} s (medians of {repeats}): {with_s / without_s:.2f}x, "
        f"+{with_s - without_s:.1f} s"
    )
    print(f"  with: {_seconds(on)}; without: {_seconds(off)}")


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS / "train")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--default-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="catdog-bench-gradcam-") as scratch:
        root = Path(scratch)
        os.environ["KERAS_HOME"] = str(root / "keras")
        measure("default pipeline", make_project_copy(root / "default", tiny=False), args.repeats)
        if not args.default_only:
            params = {**PHOTOS_PARAMS, "data.source": str(args.photos)}
            photos = make_project_copy(root / "photos", params, tiny=False)
            measure(f"shared photos ({args.photos})", photos, args.repeats)


if __name__ == "__main__":
    main()
