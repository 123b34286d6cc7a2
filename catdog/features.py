"""Features: the VGG16 conv base run once over every image, streamed to disk batch by batch.

Memory stays flat whatever the data set's size: images arrive through ``tf.data`` (or a
memory-mapped array of augmented views) and features go straight into a memory-mapped ``.npy``.

The work can be cut into shards (:func:`plan_shards`): contiguous row ranges whose sizes are
multiples of the batch size, so every batch holds the same images as in one pass over the set
and the features are bit-for-bit the same however many processes or machines compute them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from catdog.vgg16 import make_conv_base, make_vgg16_preprocess

__all__ = [
    "Shard",
    "assemble_shards",
    "extract_to_file",
    "extractor_from_weights",
    "feature_extractor",
    "plan_shards",
    "view_batches",
]

log = logging.getLogger(__name__)


def feature_extractor(
    conv_base: keras.Model, weights_from: keras.Model | None = None
) -> keras.Model:
    """Raw RGB pixels in, VGG16 conv-base features out (preprocessing inside).

    Args:
        conv_base: The conv base, built under the dtype policy the extractor should compute in.
        weights_from: A conv base to copy the weights from (e.g. a float32 one), if not itself.
    """
    if weights_from is not None:
        conv_base.set_weights(weights_from.get_weights())
    size = conv_base.input_shape[1]
    inputs = keras.Input(shape=(size, size, 3), name="image")
    outputs = conv_base(make_vgg16_preprocess()(inputs))
    return keras.Model(inputs, outputs, name="feature_extractor")


def extractor_from_weights(
    weights_path: Path, image_size: int, compute: str = "float32"
) -> keras.Model:
    """The feature extractor of a saved conv base (``.weights.h5``), computing in ``compute``.

    Args:
        weights_path: The conv base's float32 weights, as the features stage saves them.
        image_size: Side of the square images.
        compute: ``float32`` or ``mixed_bfloat16`` (the same float32 weights, bfloat16 maths).
    """
    if compute == "float32":
        return feature_extractor(make_conv_base(image_size, weights_path))
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(compute)
    try:
        return feature_extractor(make_conv_base(image_size, weights_path))
    finally:
        keras.mixed_precision.set_global_policy(previous)


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of one feature set (``train``, ``validation``, ``test``...)."""

    name: str
    index: int
    start: int
    stop: int

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.index:05d}.npy"


def plan_shards(counts: Mapping[str, int], batch_size: int, shard_batches: int) -> list[Shard]:
    """Cut each set into contiguous shards of ``shard_batches`` batches (the last may be shorter).

    Every shard starts at a multiple of ``batch_size``, so its batches are exactly those of one
    pass over the whole set, and so are the features. An empty set has no shard.

    Args:
        counts: Rows per set, in the order the shards should be listed.
        batch_size: Images per batch.
        shard_batches: Batches per shard.
    """
    if batch_size < 1 or shard_batches < 1:
        raise ValueError(
            f"batch_size and shard_batches must be >= 1: {batch_size}, {shard_batches}"
        )
    size = batch_size * shard_batches
    return [
        Shard(name, index, start, min(start + size, count))
        for name, count in counts.items()
        for index, start in enumerate(range(0, count, size))
    ]


def assemble_shards(
    shard_paths: Sequence[Path],
    count: int,
    feature_shape: Sequence[int],
    out_path: Path,
    *,
    dtype: str = "float16",
) -> tuple[int, ...]:
    """Concatenate shard ``.npy`` files, in order, into one ``.npy``, one shard in memory.

    Returns:
        The shape of the stored array, ``(count, *feature_shape)``.
    """
    shape = (count, *feature_shape)
    if count == 0:  # an empty file cannot be mapped
        np.save(out_path, np.zeros(shape, dtype=dtype))
        return shape
    array = np.lib.format.open_memmap(out_path, mode="w+", dtype=dtype, shape=shape)
    done = 0
    for path in shard_paths:
        part = np.load(path, mmap_mode="r")
        if part.dtype != np.dtype(dtype) or part.shape[1:] != tuple(feature_shape):
            raise ValueError(
                f"{path}: {part.dtype} {part.shape}, expected {dtype} (n, {shape[1:]})"
            )
        array[done : done + len(part)] = part
        done += len(part)
        del part
    if done != count:
        raise RuntimeError(f"{out_path}: expected {count} rows from the shards, got {done}")
    array.flush()
    del array
    return shape


def view_batches(views: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    """Batches of float32 pixels from a (memory-mapped) uint8 array, one batch in memory."""
    for start in range(0, len(views), batch_size):
        yield np.asarray(views[start : start + batch_size], dtype="float32")


def extract_to_file(
    extractor: keras.Model,
    batches: Iterable[np.ndarray],
    count: int,
    out_path: Path,
    *,
    dtype: str = "float16",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, ...]:
    """Run ``extractor`` over ``batches`` and stream its outputs into ``out_path`` (.npy).

    Args:
        extractor: See :func:`feature_extractor`.
        batches: Image batches, ``count`` images in all.
        count: Number of images (the array is allocated up front).
        out_path: The ``.npy`` file to write.
        dtype: Storage type (float16 halves the size; see the tests for its tolerance).
        progress: Called as ``progress(done, count)`` after each batch.

    Returns:
        The shape of the stored array.
    """
    shape = (count, *extractor.output_shape[1:])
    if count == 0:  # nothing to extract (e.g. augment.views = 0); an empty file cannot be mapped
        np.save(out_path, np.zeros(shape, dtype=dtype))
        return shape
    array = np.lib.format.open_memmap(out_path, mode="w+", dtype=dtype, shape=shape)
    done = 0
    started = time.perf_counter()
    for batch in batches:
        features = np.asarray(extractor.predict_on_batch(batch))
        array[done : done + len(features)] = features.astype(dtype)
        done += len(features)
        if progress is not None:
            progress(done, count)
    if done != count:
        raise RuntimeError(f"{out_path}: expected {count} images, got {done}")
    array.flush()
    del array
    elapsed = time.perf_counter() - started
    log.info(
        "%s: %d images in %.1f s (%.1f img/s)",
        out_path.name,
        count,
        elapsed,
        count / elapsed if elapsed else float("nan"),
    )
    return shape
