"""The from-scratch architectures and recipe on tiny images in ``tmp_path``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from catdog.augmentation import make_augmentation
from catdog.convnets import ARCHITECTURES, make_scratch_model
from catdog.images import make_dataset
from catdog.models import load_model, save_model
from catdog.params import ParamsError, parse_params
from catdog.predict import predict_images
from catdog.training import make_optimizer, train
from tests.conftest import write_image

BOOK_AUGMENTATION = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2}


def tiny_photos(folder, count=8, size=80):
    """Cats dark, dogs bright: a pattern one training step can start to learn."""
    paths, labels = [], []
    for index in range(count):
        label = "dog" if index % 2 else "cat"
        path = write_image(folder / f"{label}.{index}.jpg", size=(size + 7, size), seed=index)
        paths.append(str(path))
        labels.append(label)
    return paths, labels


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("size", [78, 96])
def test_each_architecture_builds_at_small_sizes(arch, size):
    model = make_scratch_model(size, make_augmentation(**BOOK_AUGMENTATION), arch=arch)
    assert model.output_shape == (None, 1)
    assert model(np.zeros((2, size, size, 3), "float32")).shape == (2, 1)


def test_xception_has_residuals_batch_norm_and_separable_convolutions():
    model = make_scratch_model(96, make_augmentation(**BOOK_AUGMENTATION), arch="xception")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Add", "BatchNormalization", "SeparableConv2D", "GlobalAveragePooling2D"} <= kinds
    assert "Flatten" not in kinds
    separable = [
        layer.filters for layer in model.layers if isinstance(layer, keras.layers.SeparableConv2D)
    ]
    assert separable == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512]


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_weights_and_output():
    model = make_scratch_model(
        80, make_augmentation(**BOOK_AUGMENTATION), arch="xception", compute="mixed_bfloat16"
    )
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.SeparableConv2D)]
    assert {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert {w.dtype for layer in convs for w in layer.weights} == {"float32"}
    assert model.layers[-1].compute_dtype == "float32"
    assert model.get_layer("augmentation").compute_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building


def test_same_seed_same_initial_weights_whatever_was_built_before():
    def weights(seed):
        model = make_scratch_model(
            80, make_augmentation(**BOOK_AUGMENTATION), arch="xception", seed=seed
        )
        return model.get_weights()

    first = weights(3)
    make_scratch_model(96, make_augmentation(**BOOK_AUGMENTATION), arch="book")
    again, other = weights(3), weights(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("compute", ["float32", "mixed_bfloat16"])
def test_trains_a_step_saves_reloads_safely_and_predict_matches_evaluate(tmp_path, compute):
    paths, labels = tiny_photos(tmp_path / "photos")
    model = make_scratch_model(
        80, make_augmentation(**BOOK_AUGMENTATION), arch="xception", seed=1, compute=compute
    )
    before = [w.copy() for w in model.get_weights()]
    data = make_dataset(paths, 80, 4, labels, shuffle_seed=1, cache=True)
    optimizer = make_optimizer(
        "adamw",
        0.01,
        schedule="cosine",
        epochs=2,
        steps_per_epoch=2,
        warmup_epochs=1,
        weight_decay=0.05,
    )
    result = train(model, data, data, epochs=2, learning_rate=0.01, optimizer=optimizer)
    assert len(result.history["loss"]) == 2
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    path = save_model(result.model, tmp_path / "scratch.keras")
    loaded = load_model(path)  # safe_mode=True
    assert loaded.get_layer(index=-1).compute_dtype == "float32"
    # evaluate's way: the manifest's files through make_dataset, in order
    evaluated = np.asarray(loaded.predict(make_dataset(paths, 80, 3), verbose=0)).reshape(-1)
    np.testing.assert_allclose(
        evaluated, np.asarray(result.model.predict(make_dataset(paths, 80, 3), verbose=0)).ravel()
    )
    predicted, problems = predict_images(
        loaded, [tmp_path / "photos" / p.split("/")[-1] for p in paths]
    )
    assert problems == []
    np.testing.assert_allclose(predicted["prob_dog"], np.round(evaluated, 6), atol=1e-6)


def test_cached_dataset_gives_the_same_batches_in_the_same_order(tmp_path):
    paths, labels = tiny_photos(tmp_path / "photos")
    plain = make_dataset(paths, 80, 3, labels, shuffle_seed=5)
    cached = make_dataset(paths, 80, 3, labels, shuffle_seed=5, cache=True)
    for _ in range(2):  # two epochs: the reshuffle matches too
        for (x1, y1), (x2, y2) in zip(plain, cached, strict=True):
            np.testing.assert_array_equal(x1.numpy(), x2.numpy())
            np.testing.assert_array_equal(y1.numpy(), y2.numpy())


def test_cosine_schedule_warms_up_then_decays_to_zero():
    optimizer = make_optimizer(
        "adamw", 0.002, schedule="cosine", epochs=10, steps_per_epoch=5, warmup_epochs=2
    )
    values = []
    for step in (0, 5, 10, 30, 50):  # the rate the optimizer applies at that step
        optimizer.iterations.assign(step)
        values.append(float(optimizer.learning_rate))
    assert values[0] == pytest.approx(0.002 / 100)
    assert values[0] < values[1] < values[2] == pytest.approx(0.002)
    assert values[2] > values[3] > values[4] == pytest.approx(0.0, abs=1e-9)


def test_recipe_params_are_checked_with_the_key_at_fault():
    with pytest.raises(ParamsError, match=r"scratch\.arch: .*'book'.*'xception'"):
        parse_params({"scratch": {"arch": "resnet"}})
    with pytest.raises(ParamsError, match=r"warmup_epochs .* must be fewer than epochs"):
        parse_params({"scratch": {"epochs": 2, "warmup_epochs": 2}})
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd", 0.1)


def test_keep_last_keeps_the_last_epoch_trained_not_the_best():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + 0.3 * rng.normal(size=64) > 0).astype("float32")
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    flipped = (x[:32], 1 - y[:32])  # validation labels against training: val_loss only rises
    keras.utils.set_random_seed(3)
    result = train(head, (x, y), flipped, epochs=6, learning_rate=0.05, batch_size=16, keep="last")
    losses = result.history["val_loss"]
    assert int(np.argmin(losses)) < 5, "this setup should not end on its best epoch"
    assert result.best_epoch == 5
    assert result.best_val_loss == losses[-1]
    kept = head.evaluate(*flipped, verbose=0, return_dict=True)["loss"]
    assert kept == pytest.approx(losses[-1], rel=1e-5)
    with pytest.raises(ValueError, match="unknown keep 'first'"):
        train(head, (x, y), (x, y), epochs=1, learning_rate=0.1, keep="first")


def test_monitor_val_accuracy_keeps_the_most_accurate_epoch():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + 0.3 * rng.normal(size=64) > 0).astype("float32")
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    keras.utils.set_random_seed(2)
    result = train(
        head,
        (x, y),
        (x[:32], y[:32]),
        epochs=6,
        learning_rate=0.05,
        batch_size=16,
        monitor="val_accuracy",
    )
    accuracy = result.history["val_accuracy"]
    assert result.best_epoch == int(np.argmax(accuracy))  # the first of the best
    assert result.best_val_loss == result.history["val_loss"][result.best_epoch]
    kept = head.evaluate(x[:32], y[:32], verbose=0, return_dict=True)["accuracy"]
    assert kept == pytest.approx(max(accuracy))
