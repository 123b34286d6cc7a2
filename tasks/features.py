"""Features task: VGG16 conv-base features of every split and augmented view, streamed to disk.

The work is cut into shards (``features.shard_batches`` batches each) that Prefect maps over the
flow's task runner: local threads by default, or a Dask cluster (``catdog/servers/dask.py``). Each
shard loads the conv base from the weights file this stage saved first, so every worker uses
exactly the same weights, and writes its features into the stage's staging folder. That folder
must therefore be on a filesystem every worker sees at the same path; only paths travel through
Prefect and Dask, never arrays.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
from prefect import task
from prefect.context import FlowRunContext
from prefect.futures import as_completed

from catdog import vocabulary as vocab
from catdog.features import (
    Shard,
    assemble_shards,
    extract_to_file,
    extractor_from_weights,
    plan_shards,
    view_batches,
)
from catdog.images import make_dataset, targets
from catdog.io import atomic_dir, atomic_file, remove_stale_staging, write_json
from catdog.manifest import read_manifest, split_rows
from catdog.results import StageResult
from catdog.seeding import seed_everything
from catdog.vgg16 import make_conv_base
from catdog.vocabulary import SPLITS, VIEWS_ARRAY, VIEWS_INDEX
from catdog.weights import ResolvedWeights, resolve_weights
from tasks.common import TASK_OPTIONS, progress_logger, run_logger

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import DataParams, FeaturesParams

AUGMENTED = "train_aug"
_SHARDS_DIR = ".shards"  # inside the staging folder; removed before it becomes the output
_WEIGHTS_FILE = ".conv_base.weights.h5"  # idem; the one copy of the weights every shard loads


@dataclass(frozen=True)
class ShardJob:
    """Everything one shard needs, as plain values and absolute paths (it may run elsewhere)."""

    shard: Shard
    out_path: str
    weights_path: str
    image_size: int
    batch_size: int
    compute: str
    dtype: str
    seed: int
    images: tuple[str, ...] = ()  # the shard's image files (a split), or
    views_path: str = ""  # the augmented views array, rows shard.start:shard.stop

    @property
    def label(self) -> str:
        return f"{self.shard.name}-{self.shard.index}"


# Task functions are pickled by value for Dask (the module attribute is the Task, not the
# function), with the globals they name: they must name only picklable ones, so the lock and
# the cache are reached through plain functions, which pickle by reference.
_cache_lock = threading.Lock()
_cached: dict[tuple[object, ...], keras.Model] = {}


def _extractor(job: ShardJob) -> keras.Model:
    """The extractor of the job's weights, built once per process (a worker runs many shards)."""
    stat = os.stat(job.weights_path)
    key = (job.weights_path, stat.st_mtime_ns, stat.st_size, job.image_size, job.compute)
    with _cache_lock:
        if key not in _cached:
            _cached.clear()  # one stage's extractor at a time: no growth in long-lived processes
            seed_everything(job.seed)  # deterministic kernels in this process too
            _cached[key] = extractor_from_weights(
                Path(job.weights_path), job.image_size, job.compute
            )
        return _cached[key]


def release_extractor() -> None:
    """Forget this process's cached extractor."""
    with _cache_lock:
        _cached.clear()


def compute_shard(job: ShardJob) -> str:
    """Features of one shard, written atomically to ``job.out_path``; returns that path."""
    started = time.perf_counter()
    extractor = _extractor(job)
    if job.views_path:
        views = np.load(job.views_path, mmap_mode="r")
        batches = view_batches(views[job.shard.start : job.shard.stop], job.batch_size)
    else:
        dataset = make_dataset(list(job.images), job.image_size, job.batch_size)
        batches = (np.asarray(b) for b in dataset)
    out = Path(job.out_path)
    # Not atomic_file: a shard must never create the staging folder again if the stage is gone.
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex}.tmp.npy")
    try:
        extract_to_file(extractor, batches, job.shard.count, tmp, dtype=job.dtype)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    run_logger().info(
        "features: %s rows %d-%d in %.1f s (pid %d)",
        job.shard.name,
        job.shard.start,
        job.shard.stop,
        time.perf_counter() - started,
        os.getpid(),
    )
    return job.out_path


@task(name="features-shard", task_run_name="features-{job.label}", **TASK_OPTIONS)
def features_shard(job: ShardJob) -> str:
    """One shard's features, into the stage's staging folder."""
    return compute_shard(job)


def run_shards(jobs: list[ShardJob]) -> list[str]:
    """Map the shards over the flow's task runner; outside a flow, run them here in turn."""
    progress = progress_logger("features")
    total = sum(job.shard.count for job in jobs)
    if FlowRunContext.get() is None:  # e.g. task.fn() in tests and benchmarks
        done = 0
        out = []
        for job in jobs:
            out.append(compute_shard(job))
            done += job.shard.count
            progress(done, total)
        return out
    futures = features_shard.map(jobs)
    rows = {future.task_run_id: job.shard.count for future, job in zip(futures, jobs, strict=True)}
    done = 0
    # Wait for every shard, failed or not, before the staging folder can be removed.
    for future in as_completed(futures):
        future.wait()  # sets the future's final state, whichever the runner
        if future.state.is_completed():
            done += rows[future.task_run_id]
            progress(done, total)
    return [future.result() for future in futures]  # raises the first failure


def _shard_jobs(
    p: FeaturesParams,
    size: int,
    root: Path,
    rows: dict[str, pd.DataFrame],
    counts: dict[str, int],
    staging: Path,
    weights_path: Path,
) -> list[ShardJob]:
    """One job per shard: its images (or the views array), output file and conv-base weights."""
    views_path = (root / vocab.AUGMENTED_DIR / VIEWS_ARRAY).resolve()

    def images(shard: Shard) -> tuple[str, ...]:
        if shard.name == AUGMENTED:
            return ()
        paths = rows[shard.name]["path"].iloc[shard.start : shard.stop]
        return tuple(str(root.resolve() / path) for path in paths)

    return [
        ShardJob(
            shard=shard,
            out_path=str(staging / _SHARDS_DIR / shard.file_name),
            weights_path=str(weights_path),
            image_size=size,
            batch_size=p.batch_size,
            compute=p.compute,
            dtype=p.dtype,
            seed=p.seed,
            images=images(shard),
            views_path=str(views_path) if shard.name == AUGMENTED else "",
        )
        for shard in plan_shards(counts, p.batch_size, p.shard_batches)
    ]


def _assemble(
    jobs: list[ShardJob],
    shard_paths: list[str],
    counts: dict[str, int],
    feature_shape: list[int],
    staging: Path,
    dtype: str,
) -> dict[str, list[int]]:
    """Each set's shards joined, in row order, into ``<set>.npy``; returns each set's shape."""
    parts: dict[str, list[Path]] = {name: [] for name in counts}
    for job, path in zip(jobs, shard_paths, strict=True):
        parts[job.shard.name].append(Path(path))
    return {
        name: list(
            assemble_shards(parts[name], count, feature_shape, staging / f"{name}.npy", dtype=dtype)
        )
        for name, count in counts.items()
    }


def _write_targets_and_index(
    staging: Path, rows: dict[str, pd.DataFrame], views_index: pd.DataFrame
) -> None:
    """``<set>_targets.npy`` per set and ``index.csv``: which image (and view) each row is."""
    index_parts = []
    for split in SPLITS:
        np.save(staging / f"{split}_targets.npy", targets(rows[split]["label"]))
        index_parts.append(rows[split][["path", "label"]].assign(set=split, view=-1))
    np.save(staging / f"{AUGMENTED}_targets.npy", targets(views_index["label"]))
    index_parts.append(views_index.assign(set=AUGMENTED))
    pd.concat(index_parts, ignore_index=True)[["set", "path", "label", "view"]].to_csv(
        staging / "index.csv", index=False, lineterminator="\n"
    )


def _weights_meta(weights: ResolvedWeights) -> dict[str, object]:
    return {
        "requested": weights.requested,
        "kind": weights.kind,
        "label": weights.label,
        "sha256": weights.sha256,
        "pretrained": weights.pretrained,
        "warning": weights.warning,
    }


@task(name="features", **TASK_OPTIONS)
def features(root: Path, data: DataParams, features: FeaturesParams) -> StageResult:
    """Run the conv base over train, validation, test and the augmented views, shard by shard."""
    p, size = features, data.image_size
    logger = run_logger()
    weights = resolve_weights(p.weights, root=root)  # before any heavy work
    # an untrained-weights warning goes out with the result: the stage's closing lines and tags
    logger.info("features: VGG16 weights %s", weights.label)
    seed_everything(p.seed)
    # float32 variables, saved as such below; untrained ones drawn from the seed alone
    conv_base = make_conv_base(size, weights.path, seed=p.seed)
    feature_shape = list(conv_base.output_shape[1:])
    manifest = read_manifest(root / vocab.MANIFEST)
    rows = {split: split_rows(manifest, split) for split in SPLITS}
    views_index = pd.read_csv(root / vocab.AUGMENTED_DIR / VIEWS_INDEX)
    counts = {**{split: len(r) for split, r in rows.items()}, AUGMENTED: len(views_index)}
    out_dir = root / vocab.FEATURES_DIR
    remove_stale_staging(out_dir.parent)
    with atomic_dir(out_dir) as staging:
        staging = staging.resolve()  # absolute: shards may run in other processes or machines
        weights_path = staging / _WEIGHTS_FILE
        conv_base.save_weights(weights_path)
        del conv_base
        (staging / _SHARDS_DIR).mkdir()
        jobs = _shard_jobs(p, size, root, rows, counts, staging, weights_path)
        logger.info("features: %d images in %d shards", sum(counts.values()), len(jobs))
        try:
            shard_paths = run_shards(jobs)
        finally:
            release_extractor()  # the local runner's extractor is not needed once the stage ends
        shapes = _assemble(jobs, shard_paths, counts, feature_shape, staging, p.dtype)
        shutil.rmtree(staging / _SHARDS_DIR)
        _write_targets_and_index(staging, rows, views_index)
        meta = {
            "image_size": size,
            "dtype": p.dtype,
            "feature_shape": feature_shape,
            "shapes": shapes,
            "weights": _weights_meta(weights),
        }
        write_json(staging / "meta.json", meta)
        # The conv base exactly as used here: finetune starts from it, whatever the weights were.
        conv_base_path = root / vocab.CONV_BASE_WEIGHTS
        with atomic_file(conv_base_path) as tmp:
            shutil.copyfile(weights_path, tmp)
        weights_path.unlink()
    metrics = {f"{name}_images": float(shape[0]) for name, shape in shapes.items()}
    metrics["pretrained"] = float(weights.pretrained)
    return StageResult(
        "features",
        [out_dir, conv_base_path],
        metrics=metrics,
        tags={"weights": weights.label, "weights.requested": weights.requested},
        warnings=[weights.warning] if weights.warning else [],
        artifacts=[out_dir / "meta.json"],
        summary=f"{sum(int(shape[0]) for shape in shapes.values())} images through VGG16 "
        f"({weights.label} weights)",
    )
