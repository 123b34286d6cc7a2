"""Models, weights and features on tiny inputs (VGG16 at 32x32, its smallest size)."""

import h5py
import keras
import numpy as np
import pytest

from catdog.augmentation import make_augmentation
from catdog.convnets import make_scratch_model
from catdog.features import extract_to_file, feature_extractor, view_batches
from catdog.seeding import seed_everything
from catdog.training import train
from catdog.vgg16 import make_conv_base, make_dense_head, make_finetune_model, make_vgg16_preprocess
from catdog.weights import (
    IMAGENET_FILE,
    WeightsUnavailableError,
    keras_cache_path,
    resolve_weights,
)

SIZE = 32


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory):
    """An untrained VGG16 conv base saved by the test, as a user's weights file would be."""
    keras.utils.set_random_seed(123)
    path = tmp_path_factory.mktemp("weights") / "vgg16_untrained.weights.h5"
    make_conv_base(SIZE).save_weights(path)
    return path


def test_preprocess_layer_matches_keras_vgg16_preprocess_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(make_vgg16_preprocess()(x)), expected, atol=1e-4)


def test_weights_file_is_loaded(untrained_weights, tmp_path):
    resolved = resolve_weights(str(untrained_weights), root=tmp_path)
    assert (resolved.kind, resolved.label) == ("file", "file:vgg16_untrained.weights.h5")
    assert len(resolved.sha256) == 64
    keras.utils.set_random_seed(999)  # a different random init, replaced by the file's weights
    loaded = make_conv_base(SIZE, resolved.path)
    keras.utils.set_random_seed(123)
    original = make_conv_base(SIZE)
    for a, b in zip(loaded.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_weights_file_names_the_key(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=r"features\.weights.*not found"):
        resolve_weights("nowhere/vgg.weights.h5", root=tmp_path)


@pytest.fixture
def offline_keras_home(tmp_path, monkeypatch):
    """An empty Keras cache and a download URL that cannot answer (no network needed)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("catdog.weights.IMAGENET_URL", "http://127.0.0.1:9/vgg16_notop.h5")
    return tmp_path / "keras"


def test_imagenet_offline_fails_saying_where_to_put_the_file(offline_keras_home, tmp_path):
    with pytest.raises(WeightsUnavailableError) as error:
        resolve_weights("imagenet", root=tmp_path, timeout_s=2)
    message = str(error.value)
    assert str(keras_cache_path()) in message and IMAGENET_FILE in message
    assert "features.weights" in message
    assert not keras_cache_path().exists()  # a failed download leaves nothing behind


def test_auto_offline_falls_back_to_untrained_with_a_warning(offline_keras_home, tmp_path):
    resolved = resolve_weights("auto", root=tmp_path, timeout_s=2)
    assert (resolved.kind, resolved.pretrained) == ("untrained", False)
    assert "UNTRAINED" in resolved.warning and str(keras_cache_path()) in resolved.warning


def test_imagenet_from_keras_cache_loads_a_legacy_h5_file(offline_keras_home, tmp_path):
    """The ImageNet file in Keras' cache is a legacy .h5; write one and load it as Keras does."""
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(5)
    source = make_conv_base(SIZE)
    cache = keras_cache_path()
    cache.parent.mkdir(parents=True)
    with h5py.File(cache, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    for requested in ("imagenet", "auto"):
        resolved = resolve_weights(requested, root=tmp_path)
        assert (resolved.kind, resolved.path, resolved.warning) == ("imagenet", cache, "")
    loaded = make_conv_base(SIZE, cache)
    np.testing.assert_array_equal(loaded.get_weights()[0], source.get_weights()[0])


def test_finetune_trains_block5_only_and_keeps_frozen_layers(untrained_weights):
    seed_everything(0)
    conv_base = make_conv_base(SIZE, untrained_weights)
    head = make_dense_head(conv_base.output_shape[1:], units=8)
    augmentation = make_augmentation(flip="horizontal", rotation=0.1, zoom=0.2, seed=0)
    model = make_finetune_model(conv_base, head, augmentation, image_size=SIZE, unfreeze=4)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in conv_base.layers}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    y = (rng.uniform(size=8) > 0.5).astype("float32")
    train(model, (x, y), (x, y), epochs=1, learning_rate=1e-3, batch_size=4, verbose=0)
    trainable = [layer.name for layer in conv_base.layers if layer.trainable]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    for layer in conv_base.layers:
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(before[layer.name], layer.get_weights(), strict=True)
        )
        if layer.name.startswith("block5_conv"):
            assert changed, layer.name
        else:
            assert not changed, layer.name
    assert not model.get_layer("vgg16_preprocess").trainable


def test_scratch_model_is_the_books_convnet():
    model = make_scratch_model(80, make_augmentation(flip="none", rotation=0, zoom=0))
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [32, 64, 128, 256, 256]
    assert model.output_shape == (None, 1)


def test_training_restores_the_lowest_val_loss_epoch_and_stops_when_patience_runs_out():
    seed_everything(1)
    model = make_dense_head((4,), units=4)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype("float32"), (rng.uniform(size=32) > 0.5)
    result = train(
        model,
        (x, y.astype("float32")),
        (x, y.astype("float32")),
        epochs=4,
        learning_rate=0.05,
        batch_size=8,
        verbose=0,
    )
    assert result.best_epoch == int(np.argmin(result.history["val_loss"]))
    restored = model.evaluate(x, y.astype("float32"), verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(result.best_val_loss, rel=1e-4)
    seed_everything(1)
    noisy = (rng.uniform(size=32) > 0.5).astype("float32")  # labels it cannot learn
    stopped = train(
        make_dense_head((4,), units=4),
        (x, noisy),
        (x, 1 - noisy),
        epochs=50,
        learning_rate=0.05,
        batch_size=8,
        patience=2,
    )
    epochs_run = len(stopped.history["val_loss"])
    assert epochs_run < 50 and epochs_run == stopped.best_epoch + 3


def test_features_stream_to_disk_and_float16_keeps_predictions(untrained_weights, tmp_path):
    conv_base = make_conv_base(SIZE, untrained_weights)
    extractor = feature_extractor(conv_base)
    images = np.random.default_rng(2).integers(0, 255, (10, SIZE, SIZE, 3), dtype=np.uint8)
    shapes = {}
    for dtype in ("float32", "float16"):
        shapes[dtype] = extract_to_file(
            extractor, view_batches(images, 4), 10, tmp_path / f"{dtype}.npy", dtype=dtype
        )
    f32 = np.load(tmp_path / "float32.npy")
    f16 = np.load(tmp_path / "float16.npy")
    assert shapes["float32"] == (10, 1, 1, 512) and f16.dtype == np.float16
    np.testing.assert_allclose(
        f32,
        np.asarray(conv_base.predict(make_vgg16_preprocess()(images.astype("float32")), verbose=0)),
        rtol=1e-4,
        atol=1e-3,
    )
    # The head's predictions from float16 features stay within 1e-2 of float32 ones.
    seed_everything(3)
    head = make_dense_head(f32.shape[1:], units=16)
    p32 = np.asarray(head(f32)).ravel()
    p16 = np.asarray(head(f16.astype("float32"))).ravel()
    assert np.max(np.abs(p32 - p16)) < 1e-2


def test_in_model_feature_extraction_freezes_the_whole_conv_base(untrained_weights):
    conv_base = make_conv_base(SIZE, untrained_weights)
    head = make_dense_head(conv_base.output_shape[1:], units=8)
    augmentation = make_augmentation(flip="horizontal", rotation=0.1, zoom=0.2, seed=0)
    model = make_finetune_model(conv_base, head, augmentation, image_size=SIZE, unfreeze=0)
    assert conv_base.trainable_weights == []
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in head.trainable_weights}


def test_bfloat16_features_agree_with_float32_within_two_percent(untrained_weights):
    conv_base = make_conv_base(SIZE, untrained_weights)
    images = np.random.default_rng(4).uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")
    f32 = np.asarray(feature_extractor(conv_base).predict(images, verbose=0))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16_extractor = feature_extractor(make_conv_base(SIZE), weights_from=conv_base)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    bf16 = np.asarray(bf16_extractor.predict(images, verbose=0), dtype="float32")
    assert np.abs(f32 - bf16).max() <= 0.02 * np.abs(f32).max()
    assert not np.array_equal(f32, bf16)  # it really computed in bfloat16
