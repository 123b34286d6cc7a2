"""Split task: data/raw becomes the stratified, seeded manifest data/split/manifest.csv."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from catdog import paths
from catdog.io import atomic_file
from catdog.params import Params
from catdog.split import build_manifest, scan_images
from tasks.common import TASK_OPTIONS, StageResult, run_logger


@task(name="split", **TASK_OPTIONS)
def split(params: Params, root: Path) -> StageResult:
    """Write the train/validation/test manifest of data/raw."""
    p = params.split
    images = scan_images(root / paths.RAW_DIR, root)
    manifest, dropped = build_manifest(
        images, fractions=(p.train, p.validation, p.test), seed=p.seed
    )
    out = root / paths.MANIFEST
    with atomic_file(out) as tmp:
        manifest.to_csv(tmp, index=False, lineterminator="\n")
    counts = manifest.groupby(["split", "label"]).size()
    run_logger().info("split: %s; dropped %s", counts.to_dict(), dropped)
    metrics = {f"{s}_{label}": float(n) for (s, label), n in counts.items()}
    metrics.update({f"dropped_{k}": float(v) for k, v in dropped.items()})
    return StageResult("split", [out], metrics=metrics, artifacts=[out])
