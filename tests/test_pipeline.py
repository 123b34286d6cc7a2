"""The stage table is the one source of truth: dvc.yaml and the code each stage reads."""

from pathlib import Path

import yaml

from catdog import stage_table as pipeline
from cli.main import _dvc_yaml_text

REPO = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_generated_from_the_stage_table():
    assert (REPO / "dvc.yaml").read_text() == _dvc_yaml_text(), "run `catdog dvc-yaml`"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(pipeline.STAGE_NAMES)


def test_every_stage_input_is_an_earlier_stage_output_or_code():
    produced: set[str] = set()
    for s in pipeline.STAGES:
        for dep in s.deps:
            if dep == "${data.source}":  # the user's source, from params.yaml
                continue
            assert any(dep == out or dep.startswith(out + "/") for out in produced), (s.name, dep)
        produced.update(s.all_outs)


def test_params_declared_by_stages_exist():
    from catdog.params import Params

    for s in pipeline.STAGES:
        for key in s.params:
            Params().section(key)  # AttributeError if a declared key is misspelt


def test_fingerprint_changes_with_inputs_and_params(tmp_path):
    s = pipeline.stage("split")
    for path in s.all_deps:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if "." in Path(path).name:
            target.write_text("code")
        else:
            target.mkdir(exist_ok=True)
            (target / "a.jpg").write_bytes(b"1")
    base = pipeline.fingerprint(s, tmp_path, {"split": {"seed": 1}})
    assert base == pipeline.fingerprint(s, tmp_path, {"split": {"seed": 1}})
    assert base != pipeline.fingerprint(s, tmp_path, {"split": {"seed": 2}})
    (tmp_path / "data/raw/a.jpg").write_bytes(b"2")
    assert base != pipeline.fingerprint(s, tmp_path, {"split": {"seed": 1}})
