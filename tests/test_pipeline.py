"""The stage table is the one source of truth: dvc.yaml and the code each stage reads."""

from pathlib import Path

import yaml

from catdog import stage_table as pipeline
from catdog.cli.commands import dvc_yaml_text

REPO = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_generated_from_the_stage_table():
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml_text(), "run `catdog dvc-yaml`"
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
