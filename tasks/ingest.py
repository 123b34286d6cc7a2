"""Ingest task: the image source becomes data/raw (checked RGB images) and reports/ingest.json."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task

from catdog import vocabulary as vocab
from catdog.ingest import IngestError, IngestReport, ingest_source, issues_markdown
from catdog.io import atomic_dir, remove_stale_staging, write_json, write_text
from catdog.results import StageResult
from catdog.sources import PreparedSource, SourceError, prepare_source, resolve_source
from catdog.synthetic import generate_synthetic
from tasks.common import TASK_OPTIONS, progress_logger, run_logger

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import DataParams, IngestParams


def _prepare(data: DataParams, root: Path, work_dir: Path) -> PreparedSource:
    source = resolve_source(data.source, root)
    if source is None:
        synthetic = data.synthetic
        run_logger().info("generating %d synthetic pictures per class", synthetic.per_class)
        generate_synthetic(
            work_dir, per_class=synthetic.per_class, size=synthetic.size, seed=synthetic.seed
        )
        return prepare_source(work_dir, work_dir)
    try:
        return prepare_source(source, work_dir)
    except SourceError as error:
        raise IngestError(str(error)) from None


def _write_reports(
    report: IngestReport,
    source: str,
    prepared: PreparedSource,
    root: Path,
    *,
    failed: bool = False,
) -> None:
    data = report.to_json()
    data["source"] = source
    data["layout"] = prepared.layout
    json_path, summary_path = (
        (vocab.FAILED_INGEST_REPORT, vocab.FAILED_INGEST_SUMMARY)
        if failed
        else (vocab.INGEST_REPORT, vocab.INGEST_SUMMARY)
    )
    write_json(root / json_path, data)
    write_text(root / summary_path, issues_markdown(data))


@task(name="ingest", **TASK_OPTIONS)
def ingest(root: Path, data: DataParams, ingest: IngestParams) -> StageResult:
    """Check every image of data.source and write the accepted ones to data/raw."""
    logger = run_logger()
    raw_dir, report_path = root / vocab.RAW_DIR, root / vocab.INGEST_REPORT
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(raw_dir.parent)  # leftovers of a killed run are never trusted
    # Extraction (or generation) happens beside data/raw under a staging name, so a killed
    # run's leftovers are recognised and removed by the next one.
    work_dir = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.tmp-source-", dir=raw_dir.parent))
    try:
        prepared = _prepare(data, root, work_dir)
        logger.info("ingest: source %s, layout %s", data.source, prepared.layout)
        with atomic_dir(raw_dir) as staging:
            try:
                report = ingest_source(
                    prepared,
                    staging,
                    max_pixels=ingest.max_pixels,
                    min_per_class=ingest.min_per_class,
                    workers=ingest.workers,
                    progress=progress_logger("ingest: checking images"),
                )
            except IngestError as error:
                # The tracked report stays the last good ingest's (what dvc.lock records); this
                # source's report goes beside catdog's state, where the error line points.
                if error.report is not None:
                    _write_reports(error.report, data.source, prepared, root, failed=True)
                raise IngestError(f"data.source={data.source}: {error}") from None
            _write_reports(report, data.source, prepared, root)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
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
    return StageResult(
        "ingest",
        [raw_dir, report_path, root / vocab.INGEST_SUMMARY],
        metrics=metrics,
        artifacts=[report_path, root / vocab.INGEST_SUMMARY],
        summary=f"{counts['accepted']} images accepted, {counts['rejected']} rejected",
    )
