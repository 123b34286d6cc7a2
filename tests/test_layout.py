"""The code's shape, held by tests: what each stage depends on, the layers, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from catdog import code_deps as code_deps_module
from catdog import stage_table
from catdog.code_deps import code_deps

REPO = Path(__file__).resolve().parents[1]
ALL = tuple(stage_table.STAGE_NAMES)
PACKAGES = ("catdog", "tasks", "flows")
RUNNERS = code_deps_module.RUNNER_PACKAGES

# module -> the stages whose DVC code deps list it. A change here is a change to what an edit
# re-runs: make it on purpose. Zip handling and the generator stale only ingest; dedupe and split
# code only split; a plot only the stages that draw it.
EXPECTED_DEPS: dict[str, tuple[str, ...]] = {
    "catdog/__init__.py": ALL,
    "catdog/augment.py": ("augment",),
    "catdog/augmentation.py": ("augment", "classifier", "finetune", "scratch"),
    "catdog/convnets.py": ("scratch",),
    "catdog/dedupe.py": ("split",),
    "catdog/errors.py": ("ingest", "split", "features"),
    "catdog/feature_store.py": ("classifier", "evaluate"),
    "catdog/features.py": ("features",),
    "catdog/images.py": ("augment", "features", "classifier", "finetune", "scratch", "evaluate"),
    "catdog/intervals.py": ("evaluate",),
    "catdog/ingest.py": ("ingest",),
    "catdog/io.py": ALL,
    "catdog/manifest.py": ALL[1:],
    "catdog/metrics.py": ("evaluate",),
    "catdog/models.py": ("classifier", "finetune", "scratch", "evaluate"),
    "catdog/plots/__init__.py": ("augment", "classifier", "finetune", "scratch", "evaluate"),
    "catdog/plots/evaluation.py": ("evaluate",),
    "catdog/plots/figure.py": ("augment", "classifier", "finetune", "scratch", "evaluate"),
    "catdog/plots/grid.py": ("augment", "evaluate"),
    "catdog/plots/history.py": ("classifier", "finetune", "scratch"),
    "catdog/report.py": ("evaluate",),
    "catdog/results.py": ALL,
    "catdog/seeding.py": ("augment", "features", "classifier", "finetune", "scratch"),
    "catdog/sources.py": ("ingest",),
    "catdog/split.py": ("split",),
    "catdog/synthetic.py": ("ingest",),
    "catdog/training.py": ("classifier", "finetune", "scratch"),
    "catdog/vgg16.py": ("features", "classifier", "finetune"),
    "catdog/vocabulary.py": ALL,
    "catdog/weights.py": ("features",),
    "tasks/__init__.py": ALL,
    "tasks/augment.py": ("augment",),
    "tasks/classifier.py": ("classifier",),
    "tasks/common.py": ALL,
    "tasks/evaluate.py": ("evaluate",),
    "tasks/features.py": ("features",),
    "tasks/finetune.py": ("finetune",),
    "tasks/image_training.py": ("classifier", "finetune", "scratch"),
    "tasks/ingest.py": ("ingest",),
    "tasks/scratch.py": ("scratch",),
    "tasks/split.py": ("split",),
    "tasks/training_outputs.py": ("classifier", "finetune", "scratch"),
}


def test_each_module_stales_exactly_the_stages_in_the_table():
    actual: dict[str, list[str]] = {}
    for s in stage_table.STAGES:
        for path in s.code:
            actual.setdefault(path, []).append(s.name)
    assert {k: tuple(v) for k, v in actual.items()} == EXPECTED_DEPS


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_code_deps_follow_every_runtime_import_but_not_type_hints(tmp_path):
    root = _write(
        tmp_path,
        {
            "catdog/__init__.py": "",
            "catdog/a.py": "import numpy\nfrom catdog import b\n",
            "catdog/b.py": "def f():\n    from catdog.c import g  # function-local: still runs\n",
            "catdog/c.py": "g = 1\n",
            "catdog/hints.py": "",
            "catdog/unused.py": "",
            "tasks/__init__.py": "",
            "tasks/t.py": (
                "from typing import TYPE_CHECKING\n"
                "from catdog.a import x\n"
                "if TYPE_CHECKING:\n    from catdog import hints\n"
            ),
        },
    )
    assert code_deps("tasks.t", root) == (
        "catdog/__init__.py",
        "catdog/a.py",
        "catdog/b.py",
        "catdog/c.py",
        "tasks/__init__.py",
        "tasks/t.py",
    )


def _project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        out |= {n for n in names if n in modules}
    return out


def test_no_import_cycle_anywhere():
    modules = _project_modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycle = [*path[path.index(other) :], other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, [*path, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def _loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    return set(out.split())


def _is_runner(module: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in RUNNERS)


def test_core_imports_no_orchestration_framework():
    core = [m for m in _project_modules() if m.split(".")[0] == "catdog" and not _is_runner(m)]
    assert "catdog.params" in core and "catdog.plots.history" in core
    loaded = _loaded_after_import(core)
    frameworks = {
        m for m in loaded if m.split(".")[0] in {"prefect", "mlflow", "dvc", "tasks", "flows"}
    }
    assert frameworks | {m for m in loaded if _is_runner(m)} == set()


def test_only_catdog_is_installed():
    """Outside the checkout, the generic names of the workspace's folders are not importable."""
    names = ("tasks", "flows", "cli", "tracking", "servers", "workspace")
    code = f"import importlib.util as u; print([n for n in {names!r} if u.find_spec(n)])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    assert out.strip() == "[]"
    assert subprocess.run([sys.executable, "-c", "import catdog.cli.main"], cwd="/").returncode == 0


@pytest.mark.parametrize("stage", ["ingest", "split"])
def test_ingest_and_split_never_load_tensorflow(stage):
    assert "tensorflow" not in _loaded_after_import([f"tasks.{stage}"])
