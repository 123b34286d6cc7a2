"""VGG16 from the inside, after chapter 9 of *Deep Learning with Python*: what its layers make
of one photo, and the input patterns its filters respond to most.

Both work on the conv base the pipeline uses (``models/conv_base.weights.h5``), in the space it
computes in: pictures pass through VGG16's own preprocessing first (BGR, ImageNet mean
subtracted), and a pattern found by gradient ascent in that space is shown after undoing it.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from catdog.vgg16 import make_vgg16_preprocess

__all__ = ["LAYER_NAMES", "activations", "filter_patterns", "visible"]

#: The conv base's convolutions, by Keras' names, in order (VGG16: 2, 2, 3, 3, 3 per block).
LAYER_NAMES = tuple(
    f"block{block}_conv{conv}"
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1)
    for conv in range(1, convs + 1)
)


def activations(
    conv_base: keras.Model, image: np.ndarray, layers: Sequence[str], channels: int
) -> dict[str, np.ndarray]:
    """The first ``channels`` feature maps of each layer in ``layers`` for one picture.

    Args:
        conv_base: VGG16's conv base at the picture's size.
        image: ``(height, width, 3)`` RGB pixels in [0, 255].
        layers: Names of the conv base's layers.
        channels: How many of each layer's channels, from the first.

    Returns:
        Per layer, its maps ``(channels, h, w)`` as float32.
    """
    outputs = [conv_base.get_layer(name).output for name in layers]
    probe = keras.Model(conv_base.input, outputs)
    x = make_vgg16_preprocess()(np.asarray(image, np.float32)[None])
    maps = probe(x, training=False)
    maps = maps if isinstance(maps, list | tuple) else [maps]
    return {
        name: np.moveaxis(np.asarray(m[0], np.float32)[..., :channels], -1, 0)
        for name, m in zip(layers, maps, strict=True)
    }


def filter_patterns(
    conv_base: keras.Model,
    layer: str,
    filters: Sequence[int],
    *,
    steps: int = 30,
    learning_rate: float = 10.0,
    seed: int = 0,
) -> np.ndarray:
    """Input patterns that most excite ``filters`` of ``layer``, by gradient ascent.

    Starts from faint noise and climbs the mean activation of each filter (away from the
    border, as in the book) with an L2-normalised gradient, all filters in one batch.

    Args:
        conv_base: VGG16's conv base at the patterns' size.
        layer: The layer whose filters are explained.
        filters: Their indices.
        steps: Gradient ascent steps.
        learning_rate: Step size on pixels scaled to [-1, 1] (the gradient's L2 norm is 1).
        seed: Seed of the starting noise.

    Returns:
        ``(len(filters), size, size, 3)`` uint8 RGB pictures (:func:`visible`).
    """
    probe = keras.Model(conv_base.input, conv_base.get_layer(layer).output)
    size = int(conv_base.input_shape[1])
    index = tf.constant(list(filters), tf.int32)
    # The climb runs on pixels scaled to [-1, 1], as in the book, so the step size means what
    # it means there; VGG16 sees them at its own scale, 127.5 times larger.
    noise = np.random.default_rng(seed).uniform(-0.2, 0.2, (len(filters), size, size, 3))
    image = tf.Variable(noise.astype(np.float32))

    @tf.function
    def climb() -> None:
        with tf.GradientTape() as tape:
            maps = probe(127.5 * image, training=False)[:, 2:-2, 2:-2, :]
            per_filter = tf.gather(tf.transpose(maps, (0, 3, 1, 2)), index, batch_dims=1)
            loss = tf.reduce_sum(tf.reduce_mean(per_filter, axis=(1, 2)))
        gradient = tf.math.l2_normalize(tape.gradient(loss, image), axis=(1, 2, 3))
        image.assign_add(learning_rate * gradient)

    for _ in range(steps):
        climb()
    return visible(image.numpy()[..., ::-1])  # BGR, as VGG16 computes, to RGB


def visible(x: np.ndarray) -> np.ndarray:
    """Pictures, maps or patterns spread for display as the book does: each one centred,
    scaled to 64 grey levels per standard deviation around 128, clipped to uint8."""
    x = np.asarray(x, np.float64)
    axes = tuple(range(1, x.ndim))
    centred = x - x.mean(axis=axes, keepdims=True)
    spread = centred.std(axis=axes, keepdims=True)
    scaled = centred / np.where(spread > 0, spread, 1.0) * 64.0 + 128.0
    return np.clip(scaled, 0, 255).astype(np.uint8)
