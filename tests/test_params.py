from pathlib import Path

import pytest
import yaml

from catdog.params import Params, ParamsError, apply_overrides, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_matches_the_defaults_and_lists_every_key():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert load_params(REPO / "params.yaml") == Params()
    # every key is spelled out, so `dvc exp run -S key=value` can change any of them
    assert raw == Params().model_dump()


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("classifier.epocs=3", "classifier.epocs", "did you mean 'epochs'"),
        ("classifer.epochs=3", "classifer", "unknown key"),
        ("split.train=0.9", "split", "sum to 1"),
        ("data.image_size=16", "data.image_size", "greater than or equal to 32"),
        ("data.image_size=60", "data.image_size", "at least 78"),
        ("classifier.epochs=many", "classifier.epochs", "integer"),
        ("features.weights=vgg.bin", "features.weights", "weights file"),
        ("augment.zoom=1.5", "augment.zoom", "less than 1"),
    ],
)
def test_bad_params_fail_naming_the_key(override, key, words):
    with pytest.raises(ParamsError) as error:
        load_params(REPO / "params.yaml", [override])
    message = str(error.value)
    assert f"  {key}:" in message
    assert words in message
    assert str(REPO / "params.yaml") in message


def test_overrides_parse_yaml_values_and_do_not_touch_the_input():
    raw = {"classifier": {"epochs": 20}}
    out = apply_overrides(raw, ["classifier.epochs=5", "features.weights=none"])
    assert out == {"classifier": {"epochs": 5}, "features": {"weights": "none"}}
    assert raw == {"classifier": {"epochs": 20}}
    assert parse_params(out).classifier.epochs == 5


def test_malformed_override_and_files(tmp_path):
    with pytest.raises(ParamsError, match="key=value"):
        apply_overrides({}, ["classifier.epochs"])
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(listing)


def test_params_are_frozen_and_sections_reachable_by_dotted_key():
    params = Params()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        params.classifier.epochs = 3  # type: ignore[misc]
    assert params.section("data.image_size") == params.data.image_size
    assert params.section("augment").views == params.augment.views


def test_book_preset_is_the_books_recipe():
    book = load_params(REPO / "params-book.yaml")
    assert book.data.image_size == 180
    assert (book.scratch.epochs, book.classifier.epochs, book.finetune.epochs) == (100, 20, 30)
    assert book.finetune.learning_rate == 1e-5 and book.finetune.unfreeze == 4
    assert {book.scratch.batch_size, book.classifier.batch_size, book.finetune.batch_size} == {32}
    assert book.split.counts == (1000, 500, 1000)
    assert book.features.weights == "imagenet"
    # everything else is the same as params.yaml
    same = {"ingest", "evaluate", "mlflow"}
    assert all(getattr(book, s) == getattr(Params(), s) for s in same)
