"""Feature-stage benchmarks, each reported as a ratio measured in this one run.

1. throughput: the stage's path (JPEG files -> tf.data decode/resize -> VGG16 -> float16 .npy
   on disk) against bare `conv_base.predict` on the same images already in memory (goal >= 0.9);
   and the same path cut into shards mapped by a Prefect flow over its default task runner
   (local threads), then assembled, against the same bare predict (goal: no slower than unsharded);
2. memory: peak RSS of the stage's path at N and 4N images, each in a fresh process
   (goal: under 10% growth);
3. bfloat16: `mixed_bfloat16` against float32 for the bare conv base: speed and agreement.

Run: .venv/bin/python bench/features.py [--size 96] [--n 128] [--photos DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def photos(folder: Path, n: int) -> list[str]:
    files = sorted(folder.glob("*.jpg"), key=lambda p: (p.name.split(".")[0], p.name))
    cats = [p for p in files if p.name.startswith("cat")]
    dogs = [p for p in files if p.name.startswith("dog")]
    chosen = [str(p) for pair in zip(cats, dogs, strict=False) for p in pair][:n]
    if len(chosen) < n:
        raise SystemExit(f"need {n} photos in {folder}, found {len(chosen)}")
    return chosen


def stage_path(files: list[str], size: int, out: Path) -> float:
    """The features stage's own code path; returns seconds."""
    import keras

    from catdog.features import extract_to_file, feature_extractor
    from catdog.images import make_dataset
    from catdog.vgg16 import make_conv_base

    keras.utils.set_random_seed(0)
    extractor = feature_extractor(make_conv_base(size))
    extract_to_file(extractor, make_dataset(files[:32], size, 32), 32, out)  # warm-up
    started = time.perf_counter()
    batches = (b.numpy() for b in make_dataset(files, size, 32))
    extract_to_file(extractor, batches, len(files), out, dtype="float16")
    return time.perf_counter() - started


def sharded_path(files: list[str], size: int, scratch: Path, shard_batches: int) -> float:
    """The features stage's sharded path under a Prefect flow's default runner; returns seconds.

    As the stage does: the conv base saved once, shards mapped over the flow's task runner (each
    loads the weights file, once per process), then assembled into one .npy.
    """
    import keras
    from prefect import flow
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    from catdog.features import Shard, assemble_shards, plan_shards
    from catdog.servers.dask import local_task_runner
    from catdog.vgg16 import make_conv_base
    from tasks.features import ShardJob, run_shards

    keras.utils.set_random_seed(0)
    conv_base = make_conv_base(size)
    weights = scratch / "conv_base.weights.h5"
    conv_base.save_weights(weights)
    feature_shape = conv_base.output_shape[1:]
    (scratch / "shards").mkdir()

    def job(shard: Shard, paths: list[str]) -> ShardJob:
        return ShardJob(
            shard=shard,
            out_path=str(scratch / "shards" / shard.file_name),
            weights_path=str(weights),
            image_size=size,
            batch_size=32,
            compute="float32",
            dtype="float16",
            seed=0,
            images=tuple(paths[shard.start : shard.stop]),
        )

    @flow(task_runner=local_task_runner(), validate_parameters=False)
    def features_shards(jobs: list[ShardJob]) -> float:
        """Timed inside the flow run, as in the stage (whose flow run exists already)."""
        started = time.perf_counter()
        parts = run_shards(jobs)
        out = scratch / "features.npy"
        count = sum(job.shard.count for job in jobs)
        assemble_shards([Path(p) for p in parts], count, feature_shape, out)
        return time.perf_counter() - started

    features_shards([job(Shard("warmup", 0, 0, 32), files[:32])])  # warm-up: model, Prefect
    shards = plan_shards({"train": len(files)}, 32, shard_batches)
    elapsed = features_shards([job(shard, files) for shard in shards])
    APILogWorker.drain_all(timeout=30)  # while the bench's Prefect server still runs
    EventsWorker.drain_all(timeout=30)
    return elapsed


def bare_predict(files: list[str], size: int, policy: str = "float32") -> tuple[float, object]:
    """conv_base.predict on preprocessed images already in memory; returns seconds, outputs."""
    import keras
    import numpy as np

    from catdog.images import read_images

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    conv_base = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(size, size, 3)
    )
    images = keras.applications.vgg16.preprocess_input(read_images(files, size).astype("float32"))
    conv_base.predict(images[:32], batch_size=32, verbose=0)  # warm-up
    started = time.perf_counter()
    out = conv_base.predict(images, batch_size=32, verbose=0)
    elapsed = time.perf_counter() - started
    keras.mixed_precision.set_global_policy("float32")
    return elapsed, np.asarray(out, dtype="float32")


def peak_rss_mb(files: list[str], size: int) -> float:
    """Peak RSS of a fresh process that runs the stage's path on ``files``."""
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "files.json"
        listing.write_text(json.dumps(files))
        code = (
            "import json, resource, sys; sys.path.insert(0, sys.argv[1]);"
            "sys.argv = sys.argv[:1] + sys.argv[2:];"
            "from bench.features import stage_path;"
            "stage_path(json.loads(open(sys.argv[1]).read()), int(sys.argv[2]),"
            " __import__('pathlib').Path(sys.argv[3]));"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(REPO),
                str(listing),
                str(size),
                str(Path(scratch) / "f.npy"),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--n", type=int, default=128, help="images for throughput and N")
    parser.add_argument(
        "--photos", type=Path, default=REPO.parent / "shared/data/dogs-vs-cats-2400/train"
    )
    args = parser.parse_args()
    import numpy as np

    files = photos(args.photos, 4 * args.n)
    small = files[: args.n]
    with tempfile.TemporaryDirectory() as scratch:
        stage_s = stage_path(small, args.size, Path(scratch) / "features.npy")
    sharded_s = {}
    with tempfile.TemporaryDirectory() as state:
        from catdog.servers.prefect import ensure_prefect_api, prefect_home, stop_prefect_server

        os.environ["PREFECT_HOME"] = str(prefect_home(Path(state)))  # before Prefect is imported
        os.environ["PREFECT_API_URL"] = ensure_prefect_api(Path(state))
        try:
            for shard_batches in (16, 1):  # the default (one shard here), the smallest shards
                with tempfile.TemporaryDirectory() as scratch:
                    sharded_s[shard_batches] = sharded_path(
                        small, args.size, Path(scratch), shard_batches
                    )
        finally:
            stop_prefect_server(Path(state))
    bare_s, f32 = bare_predict(small, args.size)
    bf16_s, bf16 = bare_predict(small, args.size, "mixed_bfloat16")
    scale = float(np.abs(f32).max())
    rss_n = peak_rss_mb(files[: args.n], args.size)
    rss_4n = peak_rss_mb(files, args.size)
    n = len(small)
    print(f"VGG16 conv base at {args.size}x{args.size}, {n} photos, 2-core CPU")
    print(f"  stage path (files -> tf.data -> VGG16 -> float16 .npy): {n / stage_s:6.1f} img/s")
    print(f"  bare conv_base.predict on in-memory images:            {n / bare_s:6.1f} img/s")
    print(f"  ratio stage / bare: {bare_s / stage_s:.2f} (goal >= 0.9)")
    for shard_batches, seconds in sharded_s.items():
        shards = -(-n // (32 * shard_batches))
        print(
            f"  sharded stage, Prefect threads, shard_batches={shard_batches:<2} ({shards} shards):"
            f" {n / seconds:5.1f} img/s, ratio to bare {bare_s / seconds:.2f}"
        )
    print(
        f"  peak RSS: {rss_n:.0f} MB at N={args.n}, {rss_4n:.0f} MB at 4N={4 * args.n}: "
        f"growth {100 * (rss_4n - rss_n) / rss_n:+.1f}% (goal < 10%)"
    )
    print(
        f"  mixed_bfloat16 bare predict: {n / bf16_s:6.1f} img/s, speed-up {bare_s / bf16_s:.2f}x,"
        f" max |diff| {np.abs(f32 - bf16).max() / scale:.3%} of the largest feature"
    )


if __name__ == "__main__":
    main()
