"""The one input path: image files to batches of RGB pixels in [0, 255] at ``image_size``.

Training, feature extraction, evaluation and prediction all read images through
:func:`make_dataset`, so a model sees exactly the same pixels everywhere. Decoding and resizing
run in parallel inside ``tf.data`` with prefetching, so the model, not JPEG decoding, sets the pace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from catdog.vocabulary import LABEL_INDEX

__all__ = ["decode_resize", "make_dataset", "read_images", "targets"]


def targets(labels: Sequence[str]) -> np.ndarray:
    """Labels ('cat'/'dog') as float32 targets (dog = 1)."""
    return np.asarray([LABEL_INDEX[label] for label in labels], dtype="float32")


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Read, decode (any format TF knows) and resize one image like Keras' directory loader."""
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.image.resize(image, (image_size, image_size), method="bilinear")


def make_dataset(
    paths: Sequence[str],
    image_size: int,
    batch_size: int,
    labels: Sequence[str] | None = None,
    *,
    shuffle_seed: int | None = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches of float32 images (and targets when ``labels`` are given), in a stable order.

    Args:
        paths: Image files.
        image_size: Side of the square images the model takes.
        batch_size: Images per batch.
        labels: 'cat'/'dog' per path; when given, elements are ``(images, targets)``.
        shuffle_seed: Reshuffle every epoch with this seed (training); None keeps file order.
        cache: Decode and resize each image once, on the first pass, and keep the pixels in
            memory (``Dataset.cache``); later passes give the same batches in the same order.
    """
    items: tf.data.Dataset = tf.data.Dataset.from_tensor_slices(list(paths))
    if labels is not None:
        items = tf.data.Dataset.zip(items, tf.data.Dataset.from_tensor_slices(targets(labels)))

    def load(path: tf.Tensor, *target: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        image = decode_resize(path, image_size)
        return (image, target[0]) if target else image

    def shuffled(items: tf.data.Dataset) -> tf.data.Dataset:
        if shuffle_seed is None:
            return items
        return items.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)

    decode = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
    if cache:  # decode first, then shuffle the kept pixels: the same permutation of the same images
        items = shuffled(items.map(load, **decode).cache())
    else:  # shuffle the file names, decode each epoch: little memory
        items = shuffled(items).map(load, **decode)
    return items.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def read_images(paths: Sequence[str], image_size: int, batch_size: int = 64) -> np.ndarray:
    """Load images into one uint8 array (N, size, size, 3); for small sets such as previews."""
    batches = [
        np.asarray(b) for b in make_dataset(paths, image_size, batch_size).as_numpy_iterator()
    ]
    if not batches:
        return np.zeros((0, image_size, image_size, 3), dtype="uint8")
    return np.clip(np.round(np.concatenate(batches)), 0, 255).astype("uint8")
