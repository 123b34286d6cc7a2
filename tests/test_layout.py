"""The code's shape, held by tests: what each stage depends on, the layers, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from catdog import stage_table
from catdog.code_deps import code_deps, is_runner_module

REPO = Path(__file__).resolve().parents[1]
ALL = tuple(stage_table.STAGE_NAMES)
PACKAGES = ("catdog", "tasks", "flows")

# module -> the stages whose DVC code deps list it. A change here is a change to what an edit
# re-runs: make it on purpose. Zip handling and the generator stale only ingest; dedupe and split
# code only split; a plot only the stages that draw it.
EXPECTED_DEPS: dict[str, tuple[str, ...]] = {
    "catdog/__init__.py": ALL,
    "catdog/augment.py": ("augment",),
    "catdog/augmentation.py": ("augment", "classifier", "finetune", "scratch"),
    "catdog/code_deps.py": ("evaluate",),
    "catdog/convnets.py": ("scratch", "evaluate"),
    "catdog/dedupe.py": ("split",),
    "catdog/errors.py": ("ingest", "split", "features", "filters"),
    "catdog/feature_store.py": ("classifier", "evaluate"),
    "catdog/features.py": ("features",),
    "catdog/gradcam.py": ("evaluate",),
    "catdog/images.py": (
        "augment",
        "features",
        "filters",
        "classifier",
        "finetune",
        "scratch",
        "evaluate",
    ),
    "catdog/intervals.py": ("evaluate",),
    "catdog/ingest.py": ("ingest",),
    "catdog/inside.py": ("filters",),
    "catdog/io.py": ALL,
    "catdog/manifest.py": ALL[1:],
    "catdog/metrics.py": ("evaluate",),
    "catdog/models.py": ("classifier", "finetune", "scratch", "evaluate"),
    "catdog/plots/__init__.py": (
        "augment",
        "filters",
        "classifier",
        "finetune",
        "scratch",
        "evaluate",
    ),
    "catdog/plots/evaluation.py": ("evaluate",),
    "catdog/plots/figure.py": (
        "augment",
        "filters",
        "classifier",
        "finetune",
        "scratch",
        "evaluate",
    ),
    "catdog/plots/grid.py": ("augment", "filters", "evaluate"),
    "catdog/plots/history.py": ("classifier", "finetune", "scratch"),
    "catdog/report.py": ("evaluate",),
    "catdog/results.py": ALL,
    "catdog/seeding.py": (
        "augment",
        "features",
        "filters",
        "classifier",
        "finetune",
        "scratch",
        "evaluate",
    ),
    "catdog/sources.py": ("ingest",),
    "catdog/split.py": ("split",),
    # evaluate reads the models and the book's figures from the table's rows
    "catdog/stage_table.py": ("evaluate",),
    "catdog/synthetic.py": ("ingest",),
    "catdog/training.py": ("classifier", "finetune", "scratch"),
    "catdog/vgg16.py": ("features", "filters", "classifier", "finetune", "evaluate"),
    "catdog/vocabulary.py": ALL,
    "catdog/weights.py": ("features",),
    "tasks/__init__.py": ALL,
    "tasks/augment.py": ("augment",),
    "tasks/classifier.py": ("classifier",),
    "tasks/common.py": ALL,
    "tasks/evaluate.py": ("evaluate",),
    "tasks/features.py": ("features",),
    "tasks/filters.py": ("filters",),
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


def test_core_imports_no_orchestration_framework():
    core = [
        m for m in _project_modules() if m.split(".")[0] == "catdog" and not is_runner_module(m)
    ]
    assert "catdog.params" in core and "catdog.plots.history" in core
    loaded = _loaded_after_import(core)
    frameworks = {
        m for m in loaded if m.split(".")[0] in {"prefect", "mlflow", "dvc", "tasks", "flows"}
    }
    assert frameworks | {m for m in loaded if is_runner_module(m)} == set()


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


def _stage_name_collections(path: Path) -> list[int]:
    """Lines of ``path`` holding a literal tuple, list, set or dict that names two stages."""
    names, lines = set(stage_table.STAGE_NAMES), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        named = {i.value for i in items if isinstance(i, ast.Constant) and i.value in names}
        if len(named) >= 2:
            lines.append(node.lineno)
    return lines


def test_a_stage_is_one_row_of_the_table_and_nowhere_else(tmp_path):
    """Adding a stage is its row, its task, its core module and its test: no other list of
    stages in the code to keep in step."""
    table = REPO / "catdog" / "stage_table.py"
    listed = {
        str(path.relative_to(REPO)): lines
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path != table and (lines := _stage_name_collections(path))
    }
    assert listed == {}, "lists of stages outside catdog/stage_table.py"
    (tmp_path / "sample.py").write_text('MODELS = ("classifier", "scratch")\nX = {"split": 1}\n')
    assert _stage_name_collections(tmp_path / "sample.py") == [1]  # the check finds one


def test_each_row_gives_its_flow_task_signature_and_model():
    import inspect

    from flows.stages import STAGE_FLOWS

    assert list(STAGE_FLOWS) == list(stage_table.STAGE_NAMES)
    for row in stage_table.STAGES:
        assert STAGE_FLOWS[row.name].name == f"catdog-{row.name}"
        module, function = row.task
        task = getattr(__import__(module, fromlist=[function]), function)
        # a task takes the workspace, then exactly the params sections its DVC stage declares
        parameters = list(inspect.signature(task.fn).parameters)
        epochs = ["on_epoch_end"] if row.logs_epochs else []
        assert parameters == ["root", *row.sections, *epochs], row.name
        assert task.name == row.name
    models = [row for row in stage_table.STAGES if row.model is not None]
    assert tuple(row.name for row in models) == stage_table.MODELS
    assert all(row.logs_epochs for row in models)
    assert {r.model.registered_name for r in models} == set(stage_table.REGISTERED_NAMES.values())
