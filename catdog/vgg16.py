"""VGG16 after chapter 8 of *Deep Learning with Python*: its conv base, the dense head trained on
its features, and the fine-tuning model that joins them.

Models that take images take raw RGB pixels in [0, 255] and do VGG16's preprocessing inside, with
built-in layers only (no Lambda, no custom classes), so every saved model loads with
``safe_mode=True`` and through MLflow anywhere.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from catdog.seeding import initialize_weights

__all__ = [
    "GRADCAM_LAYER",
    "make_conv_base",
    "make_dense_head",
    "make_finetune_model",
    "make_vgg16_preprocess",
    "unfreeze_top",
]

# Caffe-style VGG16 preprocessing: BGR channel order, ImageNet mean subtracted, no scaling.
_VGG16_BGR_MEAN = (103.939, 116.779, 123.68)
#: The conv base's last convolution (Keras' own name in its VGG16), the layer Grad-CAM explains.
GRADCAM_LAYER = "block5_conv3"


def make_vgg16_preprocess(name: str = "vgg16_preprocess") -> layers.Dense:
    """``keras.applications.vgg16.preprocess_input`` as a frozen built-in layer.

    A Dense layer over the channel axis whose kernel swaps RGB to BGR and whose bias subtracts
    the ImageNet mean: exact (it multiplies by 1 and 0), and a saved model needs no custom code
    to load, in Keras' safe mode or through ``mlflow.pyfunc``.
    """
    swap_rgb_bgr = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    return layers.Dense(
        3,
        kernel_initializer=keras.initializers.Constant(swap_rgb_bgr),
        bias_initializer=keras.initializers.Constant([-m for m in _VGG16_BGR_MEAN]),
        trainable=False,
        name=name,
    )


def make_conv_base(
    image_size: int, weights_path: Path | None = None, *, seed: int = 0
) -> keras.Model:
    """VGG16 without its top at ``image_size``; loads ``weights_path`` if given, else untrained.

    Untrained weights are drawn from ``seed`` alone (:func:`catdog.seeding.initialize_weights`).
    """
    conv_base = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    if weights_path is None:
        return initialize_weights(conv_base, seed)
    conv_base.load_weights(str(weights_path))
    return conv_base


def make_dense_head(
    feature_shape: tuple[int, ...], *, units: int = 256, dropout: float = 0.5, seed: int = 0
) -> keras.Model:
    """The book's classifier on VGG16 features: Flatten, Dense(units), Dropout, Dense(1, sigmoid).

    As in the book (listing 8.20), the Dense layer has no activation. Initial weights and dropout
    masks are drawn from ``seed``.
    """
    inputs = keras.Input(shape=feature_shape, name="features")
    x = layers.Flatten()(inputs)
    x = layers.Dense(units)(x)
    x = layers.Dropout(dropout, seed=seed)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return initialize_weights(keras.Model(inputs, outputs, name="dense_head"), seed)


def unfreeze_top(conv_base: keras.Model, count: int) -> None:
    """Make only the last ``count`` layers of the conv base trainable (the book: 4, block5)."""
    conv_base.trainable = True
    for layer in conv_base.layers[:-count]:
        layer.trainable = False


def make_finetune_model(
    conv_base: keras.Model,
    head: keras.Model,
    augmentation: keras.Sequential,
    *,
    image_size: int,
    unfreeze: int = 4,
) -> keras.Model:
    """Images in, probability of dog out: augmentation, VGG16 preprocessing, conv base, head.

    ``unfreeze=0`` freezes the whole conv base: the book's feature extraction with in-model
    augmentation (listing 8.27); the book's fine-tuning unfreezes the last 4 layers.
    """
    if unfreeze == 0:
        conv_base.trainable = False
    else:
        unfreeze_top(conv_base, unfreeze)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = augmentation(inputs)
    x = make_vgg16_preprocess()(x)
    x = conv_base(x)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="finetune")
