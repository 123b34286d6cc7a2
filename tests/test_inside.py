"""VGG16 from the inside: a photo's activations per layer, and the inputs its filters prefer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from catdog import inside, vgg16
from catdog.params import FiltersParams

SIZE = 64


@pytest.fixture(scope="module")
def conv_base() -> keras.Model:
    return vgg16.make_conv_base(SIZE, seed=7)


def test_activations_are_each_layers_first_maps_of_the_preprocessed_photo(conv_base):
    photo = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)
    layers = ["block1_conv1", "block3_conv2", "block5_conv1"]
    maps = inside.activations(conv_base, photo, layers, channels=5)
    assert list(maps) == layers
    assert [m.shape for m in maps.values()] == [(5, 64, 64), (5, 16, 16), (5, 4, 4)]
    probe = keras.Model(conv_base.input, conv_base.get_layer("block3_conv2").output)
    x = vgg16.make_vgg16_preprocess()(photo[None].astype(np.float32))
    expected = np.moveaxis(np.asarray(probe(x))[0, ..., :5], -1, 0)
    np.testing.assert_allclose(maps["block3_conv2"], expected, rtol=1e-5, atol=1e-5)


def _mean_activation(conv_base: keras.Model, layer: str, pictures: np.ndarray) -> np.ndarray:
    """(pictures, filters): each picture's mean activation of each filter, as VGG16 sees it."""
    probe = keras.Model(conv_base.input, conv_base.get_layer(layer).output)
    rgb = pictures.astype(np.float32) / 127.5 - 1.0  # back to the climb's scale
    return np.asarray(probe(127.5 * rgb[..., ::-1]))[:, 2:-2, 2:-2, :].mean(axis=(1, 2))


@pytest.mark.parametrize("layer", ["block1_conv2", "block4_conv1"])
def test_each_pattern_excites_its_own_filter_most(conv_base, layer):
    noise = inside.visible(np.random.default_rng(1).uniform(-1, 1, (3, SIZE, SIZE, 3)))
    alive = np.flatnonzero(_mean_activation(conv_base, layer, noise).min(axis=0) > 0)
    chosen = list(alive[:3])  # a random filter dead on noise has no gradient to climb
    patterns = inside.filter_patterns(conv_base, layer, chosen, steps=20, seed=1)
    assert patterns.shape == (3, SIZE, SIZE, 3) and patterns.dtype == np.uint8
    on_patterns = _mean_activation(conv_base, layer, patterns)[:, chosen]
    on_noise = _mean_activation(conv_base, layer, noise)[:, chosen]
    own = np.diag(on_patterns)
    assert np.all(own > np.diag(on_noise))  # the climb went up
    for k in range(len(chosen)):  # and a pattern is its filter's, not any filter's
        assert own[k] > np.delete(on_patterns[:, k], k).max(), (k, on_patterns)


def test_visible_centres_and_spreads_each_picture():
    flat = np.full((2, 4, 4), 3.0)
    assert np.all(inside.visible(flat) == 128)
    ramp = np.stack([np.arange(16.0).reshape(4, 4), 1000 * np.arange(16.0).reshape(4, 4)])
    shown = inside.visible(ramp)
    assert shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[0], shown[1])  # each scaled on its own
    assert shown[0].min() < 60 and shown[0].max() > 196


def test_layers_are_vgg16s_own():
    assert set(FiltersParams().layers) <= {layer.name for layer in vgg16.make_conv_base(32).layers}
    with pytest.raises(ValueError, match="block6_conv1"):
        FiltersParams(layers=["block6_conv1"])
    with pytest.raises(ValueError):
        FiltersParams(layers=[])
