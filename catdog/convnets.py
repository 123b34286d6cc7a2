"""Convnets trained from scratch: the book's small convnet (chapter 8, listing 8.14).

They take raw RGB pixels in [0, 255], augment and rescale them inside the model, and use
built-in layers only, so a saved model loads with ``safe_mode=True`` and through MLflow.
"""

from __future__ import annotations

import keras
from keras import layers

from catdog.seeding import initialize_weights

__all__ = ["make_scratch_model"]


def make_scratch_model(
    image_size: int, augmentation: keras.Sequential, *, dropout: float = 0.5, seed: int = 0
) -> keras.Model:
    """The book's small convnet (listing 8.14): augmentation, rescaling, five convolutions.

    Initial weights and dropout masks are drawn from ``seed``.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    for filters in (32, 64, 128, 256):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(256, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout, seed=seed)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return initialize_weights(keras.Model(inputs, outputs, name="scratch"), seed)
