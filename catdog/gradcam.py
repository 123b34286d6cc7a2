"""Grad-CAM, after chapter 9 of *Deep Learning with Python*: where a model looks in a picture.

The gradient of the class score with respect to the last convolutional feature map says how
much each channel matters; the channels weighted by their mean gradient, summed, and kept where
positive give a coarse map of the evidence. Which feature map is declared where each model is
defined: :data:`catdog.convnets.GRADCAM_LAYER` for the from-scratch convnets and
:data:`catdog.vgg16.GRADCAM_LAYER` for VGG16's conv base, whether it is nested in the
fine-tuning model or put in front of the dense head trained on its features.

The score is the final sigmoid's input, the dog logit, rather than the probability: a confident
prediction saturates the sigmoid in float32, and its gradient would vanish with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from PIL import Image

from catdog import convnets, vgg16
from catdog.plots.grid import plot_image_grid

__all__ = [
    "GRADCAM_LAYERS",
    "TARGETS",
    "find_gradcam_layer",
    "heatmaps",
    "overlay",
    "upsample",
    "write_overlay_grid",
]

#: The declared feature maps Grad-CAM explains, one per family of models.
GRADCAM_LAYERS = (convnets.GRADCAM_LAYER, vgg16.GRADCAM_LAYER)
#: Whose evidence a map shows: the class each picture is predicted as, or always one class.
TARGETS = ("predicted", "dog", "cat")


@dataclass(frozen=True)
class _Explainer:
    """A model cut at its feature map, the output of ``layer``: ``front`` runs before it,
    ``features`` gives the feature map and what the model computes from it next, ``back``
    continues up to the input of ``dense``, the final Dense whose pre-activation is the dog
    logit."""

    layer: keras.layers.Layer
    front: tuple[keras.layers.Layer, ...]
    features: keras.Model
    back: tuple[keras.layers.Layer, ...]
    dense: keras.layers.Dense


def _declared_layer(model: keras.Model) -> keras.layers.Layer | None:
    names = {layer.name: layer for layer in model.layers}
    found = [names[name] for name in GRADCAM_LAYERS if name in names]
    return found[0] if found else None


def _is_sigmoid_dense(layer: keras.layers.Layer) -> bool:
    return (
        isinstance(layer, keras.layers.Dense)
        and layer.units == 1
        and layer.activation is keras.activations.sigmoid
    )


def _final_dense(model: keras.Model) -> keras.layers.Dense:
    if not _is_sigmoid_dense(model.layers[-1]):
        raise ValueError(f"model {model.name!r} does not end in a Dense(1, sigmoid) layer")
    return model.layers[-1]


def _split_at_logit(
    layer: keras.layers.Layer,
) -> tuple[tuple[keras.layers.Layer, ...], keras.layers.Dense]:
    """(layers up to the final Dense's input, that Dense) of a head: a Dense or a model."""
    if _is_sigmoid_dense(layer):
        return (), layer
    if not isinstance(layer, keras.Model):
        raise ValueError(f"cannot find the dog logit in layer {layer.name!r}")
    dense = _final_dense(layer)
    return (keras.Model(layer.inputs, dense.input, name=f"{layer.name}_logit_input"),), dense


def _chained(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _called_on(node: object) -> list[str]:
    """The names of the layers whose outputs a serialized call (inbound node) takes."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            return [node["config"]["keras_history"][0]]
        return [name for value in node.values() for name in _called_on(value)]
    if isinstance(node, list | tuple):
        return [name for value in node for name in _called_on(value)]
    return []


def _is_chain(model: keras.Model) -> bool:
    """Whether the model's layers run one after the other, each on the previous one's output,
    read from the model's own graph (a layer shared with other models has calls in theirs)."""
    if isinstance(model, keras.Sequential):
        return True
    config = model.get_config()
    ends = [config.get(key) or [] for key in ("input_layers", "output_layers")]
    ends = [[end] if end and isinstance(end[0], str) else end for end in ends]  # one: unnested
    if any(len(end) != 1 for end in ends):
        return False
    previous = None
    for entry in config["layers"]:
        calls = entry.get("inbound_nodes", [])
        if previous is not None and (len(calls) != 1 or _called_on(calls[0]) != [previous]):
            return False
        previous = entry["name"]
    return ends[1][0][0] == previous


def _flattened(model: keras.Model) -> list[keras.layers.Layer]:
    """The chain of layers ``model`` runs, with nested chain models that do not hold a declared
    feature map opened up (``catdog predict``'s classifier on images nests the conv base in a
    feature extractor), so the model that holds it is one link of the chain."""
    layers: list[keras.layers.Layer] = []
    for layer in _chained(model):
        opened = isinstance(layer, keras.Model) and _declared_layer(layer) is None
        layers += _flattened(layer) if opened and _is_chain(layer) else [layer]
    return layers


def _on_images(model: keras.Model, conv_base: keras.Model | None) -> keras.Model:
    """``model`` itself, or a dense head on VGG16 features with its conv base put in front."""
    if conv_base is None:
        return model
    image = keras.Input(shape=conv_base.input_shape[1:], name="image")
    outputs = model(conv_base(vgg16.make_vgg16_preprocess()(image)))
    return keras.Model(image, outputs, name=f"{model.name}_on_images")


def _make_explainer(model: keras.Model) -> _Explainer:
    """Cut ``model`` at its declared feature map, in it or in a model nested in it (the
    fine-tuning model's conv base); layers around a nested model must form a chain."""
    layer = _declared_layer(model)
    if layer is not None:
        dense = _final_dense(model)
        features = keras.Model(model.inputs, [layer.output, dense.input])
        return _Explainer(layer, (), features, (), dense)
    chain = _flattened(model)
    for index, inner in enumerate(chain):
        layer = _declared_layer(inner) if isinstance(inner, keras.Model) else None
        if layer is None or index == len(chain) - 1:
            continue
        *middle, head = chain[index + 1 :]
        pre_logit, dense = _split_at_logit(head)
        features = keras.Model(inner.inputs, [layer.output, inner.output])
        return _Explainer(layer, tuple(chain[:index]), features, (*middle, *pre_logit), dense)
    raise ValueError(
        f"model {model.name!r} has no layer named one of {GRADCAM_LAYERS}, in it or in a model "
        "inside it (a scratch model saved before its feature map was named needs rebuilding; "
        "a classifier on VGG16 features needs its conv_base)"
    )


def find_gradcam_layer(
    model: keras.Model, *, conv_base: keras.Model | None = None
) -> keras.layers.Layer:
    """The feature-map layer :func:`heatmaps` explains for ``model``.

    Args:
        model: A model that takes raw RGB pixels in [0, 255] and ends in a sigmoid (scratch,
            finetune), or a dense head on VGG16 features (classifier) with ``conv_base``.
        conv_base: The VGG16 conv base whose features a classifier head takes.

    Raises:
        ValueError: If the model has no declared feature map, or no sigmoid Dense after it.
    """
    return _make_explainer(_on_images(model, conv_base)).layer


def _logit(explainer: _Explainer, rest: tf.Tensor) -> tf.Tensor:
    for layer in explainer.back:
        rest = layer(rest, training=False)
    dense = explainer.dense
    # float32 whatever the policy: the logit of a bfloat16 model is rounded to 3 digits
    x = tf.cast(rest, tf.float32)
    return tf.matmul(x, tf.cast(dense.kernel, tf.float32))[:, 0] + tf.cast(dense.bias, tf.float32)


def _target_sign(logit: tf.Tensor, target: str) -> tf.Tensor:
    if target == "predicted":
        return tf.where(logit >= 0, 1.0, -1.0)
    return tf.fill(tf.shape(logit), 1.0 if target == "dog" else -1.0)


def _explain_batch(
    explainer: _Explainer, images: np.ndarray, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of dog and normalised Grad-CAM maps of one batch."""
    x = tf.convert_to_tensor(images, tf.float32)
    for layer in explainer.front:
        x = layer(x, training=False)
    with tf.GradientTape() as tape:
        tape.watch(x)  # a frozen conv base has no watched variables to record the maps through
        feature_map, rest = explainer.features(x, training=False)
        logit = _logit(explainer, rest)
        score = tf.reduce_sum(tf.stop_gradient(_target_sign(logit, target)) * logit)
    gradients = tf.cast(tape.gradient(score, feature_map), tf.float32)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(tf.cast(feature_map, tf.float32) * channel_weights, axis=-1))
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)  # an all-zero map stays zero
    return tf.sigmoid(logit).numpy(), cam.numpy()


def heatmaps(
    model: keras.Model,
    images: np.ndarray,
    *,
    conv_base: keras.Model | None = None,
    batch_size: int = 32,
    target: str = "predicted",
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps of ``images``, at the resolution of the model's declared feature map.

    As in chapter 9, a map explains the predicted class by default: for a sigmoid the cat
    score is the negated dog logit, so a picture called a cat shows what made it a cat. The dog
    logit's map of a confident cat would show only what little speaks for a dog.

    Args:
        model: A scratch or finetune model (raw RGB pixels in [0, 255] in, probability of dog
            out; augmentation and dropout stay inactive), or a classifier (a dense head on
            VGG16 features) together with ``conv_base``. ``mixed_bfloat16`` models work: the
            maps are weighted and summed in float32.
        images: ``(n, height, width, 3)`` pixels in [0, 255], uint8 or float.
        conv_base: For a classifier, the VGG16 conv base that made its features; its input
            size is the images' size. VGG16's preprocessing is put in front of it.
        batch_size: Images per forward and backward pass; the maps do not depend on it.
        target: ``predicted`` (each picture's predicted class), ``dog`` or ``cat``.

    Returns:
        The probability of dog per image, shape ``(n,)``, and the maps in [0, 1] (each one's
        maximum is 1 unless nothing speaks for the class), shape ``(n, h, w)``.

    Raises:
        ValueError: If ``target`` or ``batch_size`` is invalid, ``images`` is not a batch of
            RGB pictures, or the model has no declared feature map (:func:`find_gradcam_layer`).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (n, height, width, 3), got {images.shape}")
    explainer = _make_explainer(_on_images(model, conv_base))
    map_shape = tuple(explainer.features.output[0].shape[1:3])
    probabilities, maps = [np.zeros(0, np.float32)], [np.zeros((0, *map_shape), np.float32)]
    for start in range(0, len(images), batch_size):
        batch = _explain_batch(explainer, images[start : start + batch_size], target)
        probabilities.append(batch[0])
        maps.append(batch[1])
    return np.concatenate(probabilities), np.concatenate(maps)


def upsample(heatmap: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A map resized bilinearly to ``size`` (a side, or ``(height, width)``), kept in [0, 1]."""
    height, width = (size, size) if isinstance(size, int | np.integer) else size
    resized = Image.fromarray(np.asarray(heatmap, np.float32), mode="F").resize(
        (int(width), int(height)), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The map in matplotlib's ``jet`` colours blended over the picture, as the book shows it.

    Args:
        image: ``(height, width, 3)`` uint8 picture.
        heatmap: A map in [0, 1] at any resolution; it is upsampled to the picture's.
        alpha: Weight of the colours, 0 (the picture alone) to 1 (the colours alone).

    Returns:
        The blended ``(height, width, 3)`` uint8 picture.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (height, width, 3), got {image.dtype} {image.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = colormaps["jet"](upsample(heatmap, image.shape[:2]))[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def write_overlay_grid(
    path: Path,
    images: np.ndarray,
    maps: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.4,
    ncols: int = 8,
    title: str | None = None,
) -> Path:
    """Write a PNG grid of pictures with their Grad-CAM maps over them, atomically.

    Args:
        path: Destination PNG; it appears complete or not at all (an earlier one stays).
        images: ``(n, height, width, 3)`` uint8 pictures.
        maps: ``(n, h, w)`` maps in [0, 1], as :func:`heatmaps` returns them.
        titles: Optional captions, one per picture (e.g. the probability of dog).
        alpha: Weight of the map's colours (:func:`overlay`).
        ncols: Maximum number of columns.
        title: Optional figure title.

    Returns:
        ``path``.
    """
    if len(images) != len(maps):
        raise ValueError(f"{len(images)} images but {len(maps)} maps")
    blended = np.stack([overlay(i, m, alpha) for i, m in zip(images, maps, strict=True)])
    return plot_image_grid(blended, Path(path), titles=titles, ncols=ncols, title=title)
