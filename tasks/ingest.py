"""Ingest task: the image source becomes data/raw (checked RGB images) and reports/ingest.json."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import task

from catdog import paths
from catdog.ingest import ingest_folder
from catdog.io import atomic_dir, remove_stale_staging, write_json
from catdog.params import Params
from catdog.synthetic import generate_synthetic
from tasks.common import TASK_OPTIONS, StageResult, progress_logger, run_logger


def source_path(params: Params, root: Path) -> Path | None:
    """The source folder, or None for the synthetic generator."""
    source = params.data.source
    return None if source == "synthetic" else (root / source).resolve()


@task(name="ingest", **TASK_OPTIONS)
def ingest(params: Params, root: Path) -> StageResult:
    """Check every image of data.source and write the accepted ones to data/raw."""
    logger = run_logger()
    raw_dir, report_path = root / paths.RAW_DIR, root / paths.INGEST_REPORT
    remove_stale_staging(raw_dir.parent)
    source = source_path(params, root)
    with tempfile.TemporaryDirectory(prefix="catdog-synthetic-") as scratch:
        if source is None:
            synthetic = params.data.synthetic
            logger.info("generating %d synthetic pictures per class", synthetic.per_class)
            source = Path(scratch)
            generate_synthetic(
                source, per_class=synthetic.per_class, size=synthetic.size, seed=synthetic.seed
            )
        with atomic_dir(raw_dir) as staging:
            report = ingest_folder(
                source,
                staging,
                max_pixels=params.ingest.max_pixels,
                min_per_class=params.ingest.min_per_class,
                workers=params.ingest.workers,
                progress=progress_logger("ingest: checking images"),
            )
            data = report.to_json()
            if params.data.source == "synthetic":
                data["source"] = "synthetic"
            write_json(report_path, data)
    counts = report.counts
    logger.info(
        "ingest: %d accepted (%s), %d rejected, %d skipped",
        counts["accepted"],
        ", ".join(f"{k} {v}" for k, v in counts["per_class"].items()),
        counts["rejected"],
        counts["skipped"],
    )
    metrics = {k: float(v) for k, v in counts.items() if k != "per_class"}
    metrics.update({f"{k}_images": float(v) for k, v in counts["per_class"].items()})
    return StageResult("ingest", [raw_dir, report_path], metrics=metrics, artifacts=[report_path])
