"""Split task: data/raw becomes the stratified, seeded manifest data/split/manifest.csv."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task

from catdog import vocabulary as vocab
from catdog.errors import ParamsError
from catdog.io import atomic_file
from catdog.results import StageResult
from catdog.split import build_manifest, check_splits, scan_images
from tasks.common import TASK_OPTIONS, run_logger

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import SplitParams


def _describe(split: str, per_class: Any) -> str:
    """``train 16 (cat 8, dog 8)``."""
    classes = ", ".join(f"{label} {n}" for label, n in per_class.items())
    return f"{split} {int(per_class.sum())} ({classes})"


@task(name="split", **TASK_OPTIONS)
def split(root: Path, split: SplitParams) -> StageResult:
    """Write the train/validation/test manifest of data/raw."""
    p = split
    images = scan_images(
        root / vocab.RAW_DIR,
        root,
        near_duplicates=p.near_duplicates,
        max_distance=p.max_distance,
        workers=p.workers,
    )
    sizes: dict[str, Any] = (
        {"counts": tuple(p.counts)}
        if p.counts is not None
        else {"fractions": (p.train, p.validation, p.test)}
    )
    try:
        manifest, dropped = build_manifest(images, seed=p.seed, **sizes)
    except ValueError as error:  # sizes that the data cannot meet: a params problem
        raise ParamsError(f"split.counts / split fractions: {error}") from None
    check_splits(manifest, dropped)  # before writing: a failed split leaves nothing behind
    out = root / vocab.MANIFEST
    with atomic_file(out) as tmp:
        manifest.to_csv(tmp, index=False, lineterminator="\n")
    counts = manifest.groupby(["split", "label"]).size()
    splits = ("train", "validation", "test")
    sizes_line = ", ".join(_describe(name, counts[name]) for name in splits)
    left_out = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items())
    run_logger().info("split: %s; left out: %s", sizes_line, left_out)
    metrics = {f"{s}_{label}": float(n) for (s, label), n in counts.items()}
    metrics.update({k: float(v) for k, v in dropped.items()})
    summary = ", ".join(f"{n} {int(counts[n].sum())}" for n in splits)
    return StageResult("split", [out], metrics=metrics, artifacts=[out], summary=summary)
