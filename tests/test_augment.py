import numpy as np
import pandas as pd

from catdog.augment import materialise_views
from catdog.augmentation import make_augmentation
from catdog.vocabulary import VIEWS_ARRAY, VIEWS_INDEX
from tests.conftest import write_image


def views_of(tmp_path, folder, images, views, seed, translation=0.0):
    out = tmp_path / folder
    out.mkdir()
    index = materialise_views(
        [str(p) for p in images],
        ["cat", "dog", "cat"],
        out,
        image_size=32,
        views=views,
        flip="horizontal",
        rotation=0.1,
        zoom=0.2,
        translation=translation,
        seed=seed,
        batch_size=2,
    )
    return np.load(out / VIEWS_ARRAY), index, out


def test_views_are_seeded_and_reproducible(tmp_path):
    images = [write_image(tmp_path / f"{i}.jpg", size=(48, 40), seed=i) for i in range(3)]
    first, index, out = views_of(tmp_path, "a", images, views=2, seed=1)
    again, _, _ = views_of(tmp_path, "b", images, views=2, seed=1)
    other, _, _ = views_of(tmp_path, "c", images, views=2, seed=2)
    assert first.shape == (6, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[:3], first[3:])  # the two views of an image differ
    assert list(index["view"]) == [0, 0, 0, 1, 1, 1]
    assert pd.read_csv(out / VIEWS_INDEX)["path"].tolist() == [str(p) for p in images] * 2


def test_zero_views_is_plain_feature_extraction(tmp_path):
    images = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    views, index, _ = views_of(tmp_path, "z", images, views=0, seed=1)
    assert views.shape == (0, 32, 32, 3) and len(index) == 0


def test_translation_is_off_in_the_books_recipe_and_seeded_when_on(tmp_path):
    book = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2, "seed": 3}
    names = [type(layer).__name__ for layer in make_augmentation(**book).layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom"]
    shifted = make_augmentation(**book, translation=0.1).layers
    assert [type(layer).__name__ for layer in shifted] == [*names, "RandomTranslation"]
    assert shifted[-1].height_factor == shifted[-1].width_factor == 0.1

    images = [write_image(tmp_path / f"{i}.jpg", size=(48, 40), seed=i) for i in range(3)]
    off, _, _ = views_of(tmp_path, "b", images, views=1, seed=1, translation=0.0)
    on, _, _ = views_of(tmp_path, "c", images, views=1, seed=1, translation=0.3)
    again, _, _ = views_of(tmp_path, "d", images, views=1, seed=1, translation=0.3)
    np.testing.assert_array_equal(on, again)  # seeded
    assert not np.array_equal(off, on)
