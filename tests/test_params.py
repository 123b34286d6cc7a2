import shutil
from pathlib import Path

import pytest
import yaml

from catdog.params import (
    Params,
    ParamsError,
    flat_params,
    load_params,
    missing_keys,
    read_params_file,
)
from catdog.workspace.params_file import apply_params, preset_values, resolve_params

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_matches_the_defaults_and_lists_every_key():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert load_params(REPO / "params.yaml") == Params()
    # every key is spelled out, so `dvc exp run -S key=value` can change any of them
    assert raw == Params().model_dump()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "classifier.epocs=3",
            "-S classifier.epocs=3: classifier.epocs: unknown key (did you mean 'epochs'?)",
        ),
        (
            "classifer.epochs=3",
            "-S classifer.epochs=3: classifer: unknown key (did you mean 'classifier'?)",
        ),
        (
            "split.train=0.9",
            "-S split.train=0.9: split: train + validation + test must sum to 1, got 1.3",
        ),
        (
            "data.image_size=16",
            "-S data.image_size=16: data.image_size: must be at least 78 (the from-scratch "
            "convnet's five 3x3 convolutions and four poolings need it), got 16",
        ),
        ("data.image_size=60", "-S data.image_size=60: data.image_size: must be at least 78"),
        ("classifier.epochs=many", "-S classifier.epochs=many: classifier.epochs: Input should"),
        ("features.weights=vgg.bin", "-S features.weights=vgg.bin: features.weights: must be"),
        ("augment.zoom=1.5", "-S augment.zoom=1.5: augment.zoom: Input should be less than 1"),
        ("classifier.epochs", "-S classifier.epochs: expected KEY=VALUE"),
        ("classifier.epochs=[1", "-S classifier.epochs=[1: not a valid override"),
    ],
)
def test_bad_overrides_fail_in_one_line_naming_the_override(override, message):
    with pytest.raises(ParamsError) as error:
        resolve_params(REPO / "params.yaml", [override], shown="params.yaml")
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_a_bad_value_in_the_file_names_the_file_not_an_override(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("epochs: 20", "epochs: 0", 1))
    with pytest.raises(ParamsError) as error:
        resolve_params(bad, ["scratch.epochs=3"], shown="params.yaml")
    assert str(error.value).startswith("params.yaml: classifier.epochs: Input should be greater")


def test_overrides_are_written_as_dvc_exp_run_writes_them(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_text()
    update = apply_params(tmp_path, overrides=["classifier.epochs=5", "split.counts=[3,1,1]"])
    after = (tmp_path / "params.yaml").read_text()
    assert update.changed and update.params.classifier.epochs == 5
    assert update.params.split.counts == (3, 1, 1)
    assert "# Parameters of every stage" in after  # DVC's writer keeps the comments
    assert load_params(tmp_path / "params.yaml") == update.params
    assert after.count("\n") >= before.count("\n")
    assert not apply_params(tmp_path, overrides=["classifier.epochs=5"]).changed


def test_a_rejected_override_writes_nothing(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    with pytest.raises(ParamsError):
        apply_params(tmp_path, overrides=["classifier.epochs=3", "scratch.epochs=-1"])
    assert (tmp_path / "params.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_preset_is_laid_over_the_defaults_not_over_the_last_run(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    apply_params(tmp_path, REPO / "params-best.yaml", ["classifier.epochs=3"])
    update = apply_params(tmp_path, REPO / "params-book.yaml", ["scratch.epochs=7"])
    assert update.preset.endswith("params-book.yaml") and update.changed
    expected = Params().model_dump(mode="json")
    expected["data"]["image_size"] = 180
    expected["split"]["counts"] = [1000, 500, 1000]
    expected["augment"]["views"] = 0
    expected["features"]["weights"] = "imagenet"
    expected["finetune"]["epochs"] = 30
    expected["scratch"]["epochs"] = 7  # -S over the preset
    written = (tmp_path / "params.yaml").read_text()
    assert yaml.safe_load(written) == expected  # nothing left of params-best.yaml or -S before
    assert update.params == load_params(tmp_path / "params.yaml")
    assert "# Parameters of every stage" in written  # params.yaml's comments stay


def test_a_bad_key_or_value_in_a_preset_names_the_preset(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    preset = tmp_path / "mine.yaml"
    for text, message in (
        ("scratch: {epocs: 3}\n", "mine.yaml: scratch.epocs: unknown key (did you mean 'epochs'?)"),
        ("scratch: {epochs: 0}\n", "mine.yaml: scratch.epochs: Input should be greater than"),
    ):
        preset.write_text(text)
        with pytest.raises(ParamsError) as error:
            apply_params(tmp_path, preset)
        assert str(error.value).startswith(f"{tmp_path}/{message}"), str(error.value)
    assert (tmp_path / "params.yaml").read_bytes() == before


def test_an_empty_preset_or_a_partial_params_yaml_is_refused_and_params_yaml_kept(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    preset = tmp_path / "empty.yaml"
    preset.write_text("")
    with pytest.raises(ParamsError) as error:
        apply_params(tmp_path, preset)
    assert str(error.value).startswith(f"{tmp_path}/empty.yaml: holds no params; a preset holds")
    assert (tmp_path / "params.yaml").read_bytes() == before
    (tmp_path / "params.yaml").write_text("data: {image_size: 80}\n")
    with pytest.raises(ParamsError) as error:
        apply_params(tmp_path, overrides=["data.image_size=96"])
    assert str(error.value).startswith("params.yaml: missing data.source, data.synthetic")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("preset", ["params-book.yaml", "params-best.yaml"])
def test_each_preset_is_an_overlay_that_validates_over_the_defaults(preset):
    laid = preset_values(REPO / preset)
    defaults = flat_params(Params().model_dump(mode="json"))
    assert all(defaults[key] != value for key, value in laid.items() if key != "scratch.patience")
    params, _ = resolve_params(REPO / "params.yaml", preset=REPO / preset)
    assert {
        k: v for k, v in flat_params(params.model_dump(mode="json")).items() if k in laid
    } == laid
    assert missing_keys(read_params_file(REPO / "params.yaml")) == []


def test_malformed_files(tmp_path):
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
    book, _ = resolve_params(REPO / "params.yaml", preset=REPO / "params-book.yaml")
    assert book.data.image_size == 180
    assert (book.scratch.epochs, book.classifier.epochs, book.finetune.epochs) == (100, 20, 30)
    assert book.finetune.learning_rate == 1e-5 and book.finetune.unfreeze == 4
    assert {book.scratch.batch_size, book.classifier.batch_size, book.finetune.batch_size} == {32}
    assert book.split.counts == (1000, 500, 1000)
    assert book.features.weights == "imagenet"
    # everything else is the same as params.yaml
    same = {"ingest", "evaluate", "mlflow"}
    assert all(getattr(book, s) == getattr(Params(), s) for s in same)


def test_catdog_params_writes_the_preset_and_runs_nothing(tmp_path, monkeypatch, capsys):
    from catdog.cli.main import main

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    argv = ["params", "--params", str(REPO / "params-best.yaml"), "-S", "scratch.epochs=3"]
    assert main(argv) == 0
    assert "params.yaml now holds" in capsys.readouterr().err
    written = load_params(tmp_path / "params.yaml")
    assert (written.scratch.arch, written.scratch.epochs, written.data.image_size) == (
        "xception",
        3,
        160,
    )
    assert main(argv) == 0 and "already holds" in capsys.readouterr().err
    assert main(["params", "-S", "scratch.epocs=3"]) == 2
    assert (
        "catdog: error: -S scratch.epocs=3: scratch.epocs: unknown key" in capsys.readouterr().err
    )
    assert load_params(tmp_path / "params.yaml") == written
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix) == ["dvc.yaml", "params.yaml"]
