"""Features: the VGG16 conv base run once over every image, streamed to disk batch by batch.

Memory stays flat whatever the data set's size: images arrive through ``tf.data`` (or a
memory-mapped array of augmented views) and features go straight into a memory-mapped ``.npy``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np

from catdog.models import make_vgg16_preprocess

__all__ = ["extract_to_file", "feature_extractor", "load_features", "view_batches"]

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


def load_features(folder: Path, name: str, *, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Features and float32 targets of one set (``train``, ``train_aug``, ``validation``...)."""
    features = np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None)
    targets = np.load(folder / f"{name}_targets.npy")
    return features, targets
