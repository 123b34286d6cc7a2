"""Convnets trained from scratch: the book's small convnet (chapter 8) and a mini-Xception.

They take raw RGB pixels in [0, 255], augment and rescale them inside the model, and use
built-in layers only, so a saved model loads with ``safe_mode=True`` and through MLflow.

``book`` is chapter 8's listing 8.14. ``xception`` is chapter 9's mini-Xception (residual
connections, batch normalization, depthwise separable convolutions) with a stride-2 stem: it
sees the same pixels but does its work at half the resolution, about 4x less compute per image
(``bench/scratch_lab.py speed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras
from keras import layers

from catdog.seeding import initialize_weights

__all__ = ["ARCHITECTURES", "GRADCAM_LAYER", "make_scratch_model", "precision"]

XCEPTION_WIDTHS = (32, 64, 128, 256, 512)
#: The name of each architecture's last convolutional feature map, the layer Grad-CAM explains
#: (:mod:`catdog.gradcam`): named where the model is defined rather than guessed from layer types.
GRADCAM_LAYER = "gradcam_features"


@contextmanager
def precision(policy: str) -> Iterator[None]:
    """Layers built inside compute in ``policy`` (e.g. ``mixed_bfloat16``: bfloat16 maths,
    float32 weights); each layer keeps its policy in the saved model."""
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def _book(x: keras.KerasTensor) -> keras.KerasTensor:
    """Listing 8.14: four conv-pool pairs and a fifth convolution, all valid 3x3."""
    for filters in (32, 64, 128, 256):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(256, 3, activation="relu", name=GRADCAM_LAYER)(x)
    return layers.Flatten()(x)


def _xception(x: keras.KerasTensor) -> keras.KerasTensor:
    """Chapter 9's mini-Xception: per width, two BN-ReLU-separable convolutions, a max pool
    and a 1x1 strided residual projection; global average pooling instead of Flatten."""
    x = layers.Conv2D(XCEPTION_WIDTHS[0], 5, strides=2, use_bias=False)(x)
    for index, width in enumerate(XCEPTION_WIDTHS):
        residual = x
        for _ in range(2):
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(residual)
        last = index == len(XCEPTION_WIDTHS) - 1
        x = layers.add([x, residual], name=GRADCAM_LAYER if last else None)
    return layers.GlobalAveragePooling2D()(x)


ARCHITECTURES = {"book": _book, "xception": _xception}


def make_scratch_model(
    image_size: int,
    augmentation: keras.Sequential,
    *,
    arch: str = "book",
    dropout: float = 0.5,
    seed: int = 0,
    compute: str = "float32",
) -> keras.Model:
    """A from-scratch convnet: augmentation, rescaling, the ``arch`` body, dropout, sigmoid.

    Initial weights and dropout masks are drawn from ``seed``. With ``compute`` set to
    ``mixed_bfloat16`` the body computes in bfloat16; augmentation and the output stay float32.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs)
    with precision(compute):
        x = layers.Rescaling(1.0 / 255)(x)
        x = ARCHITECTURES[arch](x)
        x = layers.Dropout(dropout, seed=seed)(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return initialize_weights(keras.Model(inputs, outputs, name="scratch"), seed)
