"""The stage table is the one source of truth: dvc.yaml and the code each stage reads."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from catdog import pipeline
from flows.cli import _dvc_yaml_text

REPO = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_generated_from_the_stage_table():
    assert (REPO / "dvc.yaml").read_text() == _dvc_yaml_text(), "run `catdog dvc-yaml`"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(pipeline.STAGE_NAMES)


def _local_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Files of catdog/ and tasks/ that ``module`` imports, directly or not (read from the AST)."""
    seen = set() if seen is None else seen
    path = REPO / (module.replace(".", "/") + ".py")
    if module in seen or not path.is_file():
        return set()
    seen.add(module)
    found = {path.relative_to(REPO).as_posix()}
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            if name.split(".")[0] in ("catdog", "tasks"):
                found |= _local_imports(name, seen)
    return found


@pytest.mark.parametrize("name", pipeline.STAGE_NAMES)
def test_each_stage_declares_exactly_the_code_it_imports(name):
    assert set(pipeline.stage(name).code) == _local_imports(f"tasks.{name}")


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


def test_core_imports_no_orchestration_framework():
    modules = [f"catdog.{p.stem}" for p in (REPO / "catdog").glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'dvc', "
        "'flows', 'tasks'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


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
