"""Sharded features: the same bytes on local threads, on a Dask cluster and in one pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from catdog import vocabulary as vocab
from catdog.features import Shard, assemble_shards, plan_shards
from catdog.servers.dask import DASK_ADDRESS_ENV, LOCAL_WORKERS, task_runner
from catdog.stage_table import stage
from catdog.workspace.params_file import resolve_params
from tests.conftest import REPO, TINY_PARAMS

# batch 3 and 2 batches per shard: 8 shards, some ending in a short shard and a short batch.
# A weights file, as with ImageNet: an untrained conv base draws its initial weights from
# Python's global `random`, which the Dask client's threads in this process also use.
WEIGHTS = "vgg16-untrained.weights.h5"
SHARDED = {"features.weights": WEIGHTS, "features.batch_size": 3, "features.shard_batches": 2}
SETS = ("train", "validation", "test", "train_aug")


@pytest.mark.parametrize("count", [0, 1, 5, 6, 7, 12, 13, 100])
@pytest.mark.parametrize(("batch_size", "shard_batches"), [(1, 1), (3, 2), (4, 1), (32, 16)])
def test_shards_cover_every_row_once_in_whole_batches(count, batch_size, shard_batches):
    shards = plan_shards({"a": count, "b": 2 * count}, batch_size, shard_batches)
    for name, total in (("a", count), ("b", 2 * count)):
        mine = [s for s in shards if s.name == name]
        rows = [row for s in mine for row in range(s.start, s.stop)]
        assert rows == list(range(total))  # every row once, in order
        assert [s.index for s in mine] == list(range(len(mine)))
        assert all(s.start % batch_size == 0 for s in mine)  # the one-pass batches, unchanged
        assert all(s.count == batch_size * shard_batches for s in mine[:-1])
        assert all(0 < s.count <= batch_size * shard_batches for s in mine)
    assert [s.name for s in shards] == sorted(s.name for s in shards)  # sets in the given order


def test_shard_plan_rejects_empty_shards():
    with pytest.raises(ValueError):
        plan_shards({"a": 3}, 0, 1)


def test_assembled_shards_equal_the_whole_array(tmp_path):
    whole = np.random.default_rng(0).normal(size=(7, 2, 2, 3)).astype("float16")
    parts = []
    for shard in plan_shards({"x": 7}, 2, 1):
        parts.append(tmp_path / shard.file_name)
        np.save(parts[-1], whole[shard.start : shard.stop])
    shape = assemble_shards(parts, 7, (2, 2, 3), tmp_path / "x.npy", dtype="float16")
    assert shape == (7, 2, 2, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), whole)
    with pytest.raises(RuntimeError, match="expected 8 rows"):
        assemble_shards(parts, 8, (2, 2, 3), tmp_path / "y.npy", dtype="float16")


def test_task_runner_is_local_threads_unless_a_dask_address_is_given(monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    local = task_runner()
    assert isinstance(local, ThreadPoolTaskRunner) and local._max_workers == LOCAL_WORKERS
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://10.0.0.5:8786")
    from_env = task_runner()
    assert isinstance(from_env, DaskTaskRunner) and from_env.address == "tcp://10.0.0.5:8786"
    assert task_runner("tcp://10.0.0.6:8786").address == "tcp://10.0.0.6:8786"  # option wins


def test_stage_and_run_take_a_dask_address():
    from catdog.cli.main import build_parser

    for argv in (["stage", "features"], ["run"]):
        args = build_parser().parse_args([*argv, "--dask-address", "tcp://10.0.0.5:8786"])
        assert args.dask_address == "tcp://10.0.0.5:8786"
        assert build_parser().parse_args(argv).dask_address is None  # then the env, or threads


# --- end to end: real Prefect server, real Dask cluster of worker processes -------------------


def _params():
    overrides = [f"{k}={v}" for k, v in {**TINY_PARAMS, **SHARDED}.items()]
    return resolve_params(REPO / "params.yaml", overrides)[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A workspace with the tiny data set ingested, split and augmented (no features yet)."""
    import keras

    from catdog.vgg16 import make_conv_base
    from tasks.augment import augment
    from tasks.ingest import ingest
    from tasks.split import split

    workspace = tmp_path_factory.mktemp("prepared")
    (workspace / "catdog").mkdir()
    shutil.copy(REPO / "catdog" / "synthetic.py", workspace / "catdog" / "synthetic.py")
    params = _params()
    keras.utils.set_random_seed(123)
    make_conv_base(params.data.image_size).save_weights(workspace / WEIGHTS)
    for task in (ingest, split, augment):
        task.fn(workspace, **stage(task.name).task_arguments(params))
    return workspace


def _copy(prepared: Path, dest: Path) -> Path:
    shutil.copytree(prepared, dest)
    return dest


def _run_features_flow(workspace: Path, api_url: str, address: str | None = None) -> None:
    """The features task in a Prefect flow run whose task runner comes from catdog.servers.dask."""
    from prefect import flow
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from catdog.servers.dask import with_task_runner
    from tasks.features import features

    @flow(name="catdog-features-test", validate_parameters=False)
    def features_only(root: str) -> dict[str, float]:
        return features(Path(root), **stage("features").task_arguments(_params())).metrics

    with temporary_settings({PREFECT_API_URL: api_url}):
        try:
            with_task_runner(features_only, address)(str(workspace))
        finally:  # send this process's logs and events while the session's server still runs
            EventsWorker.drain_all(timeout=30)
            APILogWorker.drain_all(timeout=30)


def _one_pass_features(workspace: Path) -> dict[str, np.ndarray]:
    """The features as the unsharded stage computed them: one pass over each set, one process."""
    from catdog.features import extract_to_file, extractor_from_weights, view_batches
    from catdog.images import make_dataset
    from catdog.manifest import read_manifest
    from catdog.vocabulary import VIEWS_ARRAY

    p, size = _params().features, _params().data.image_size
    extractor = extractor_from_weights(workspace / vocab.CONV_BASE_WEIGHTS, size, p.compute)
    manifest = read_manifest(workspace / vocab.MANIFEST)
    out = {}
    for name in SETS:
        if name == "train_aug":
            views = np.load(workspace / vocab.AUGMENTED_DIR / VIEWS_ARRAY, mmap_mode="r")
            count, batches = len(views), view_batches(views, p.batch_size)
        else:
            files = [str(workspace / f) for f in manifest[manifest["split"] == name]["path"]]
            count = len(files)
            batches = (np.asarray(b) for b in make_dataset(files, size, p.batch_size))
        target = workspace / f"one-pass-{name}.npy"
        extract_to_file(extractor, batches, count, target, dtype=p.dtype)
        out[name] = np.load(target)
    return out


@pytest.mark.e2e
def test_dask_cluster_features_equal_threads_and_one_pass(prepared, prefect_api, tmp_path):
    from dask.distributed import Client, LocalCluster, get_task_stream

    threads = _copy(prepared, tmp_path / "threads")
    on_dask = _copy(prepared, tmp_path / "dask")
    _run_features_flow(threads, prefect_api)  # the default runner: local threads
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        workers = set(client.run(lambda: None))  # the two worker processes' addresses
        with get_task_stream(client) as stream:
            _run_features_flow(on_dask, prefect_api, cluster.scheduler_address)
        ran_on = [event["worker"] for event in stream.data]

    meta = json.loads((on_dask / vocab.FEATURES_META).read_text())
    shards = plan_shards({n: shape[0] for n, shape in meta["shapes"].items()}, 3, 2)
    assert len(shards) >= 4 and len(ran_on) == len(shards), stream.data  # every shard, on Dask
    assert set(ran_on) == workers  # both worker processes computed shards

    one_pass = _one_pass_features(threads)
    features_dir = Path(vocab.FEATURES_DIR)
    expected_files = {f"{n}{suffix}.npy" for n in SETS for suffix in ("", "_targets")}
    for workspace in (threads, on_dask):
        files = {f.name for f in (workspace / features_dir).iterdir()}
        assert files == expected_files | {"index.csv", "meta.json"}  # no shard left behind
        assert [p.name for p in (workspace / "data").iterdir() if p.name.startswith(".")] == []
    for name in SETS:
        a = np.load(threads / features_dir / f"{name}.npy")
        b = np.load(on_dask / features_dir / f"{name}.npy")
        assert a.dtype == np.float16 and a.shape[0] == len(one_pass[name]) > 0
        assert np.array_equal(a, one_pass[name]), f"{name}: threads != one pass"
        assert np.array_equal(a, b), f"{name}: threads != Dask"
    for name in ("index.csv", "meta.json", "train_targets.npy", "train_aug_targets.npy"):
        assert (threads / features_dir / name).read_bytes() == (
            on_dask / features_dir / name
        ).read_bytes()


@pytest.mark.e2e
def test_a_failed_shard_leaves_no_output(prepared, prefect_api, tmp_path):
    from catdog.manifest import read_manifest

    workspace = _copy(prepared, tmp_path / "failing")
    manifest = read_manifest(workspace / vocab.MANIFEST)
    last_test_image = manifest[manifest["split"] == "test"]["path"].iloc[-1]
    (workspace / last_test_image).write_bytes(b"not an image")  # fails its shard, not retried
    with pytest.raises(Exception, match=r"(?i)image|decode"):
        _run_features_flow(workspace, prefect_api)
    assert not (workspace / vocab.FEATURES_DIR).exists()
    assert not (workspace / vocab.CONV_BASE_WEIGHTS).exists()
    assert [p.name for p in (workspace / "data").iterdir() if p.name.startswith(".")] == []


def test_shard_file_names_sort_in_row_order():
    names = [s.file_name for s in plan_shards({"train": 1000}, 1, 1)]
    assert names == sorted(names)
    assert Shard("train", 3, 9, 12).count == 3
