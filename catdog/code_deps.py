"""A stage's code dependencies, read from the imports of its task (one walk over the AST).

``dvc.yaml`` lists, for each stage, the project files its task module runs: the task and every
module of ``catdog/`` and ``tasks/`` it imports, directly or through others, with the packages'
``__init__.py``. Imports under ``if TYPE_CHECKING:`` are type hints, not code that runs, and are
left out; so are other packages (Prefect, Keras...), whose versions the environment pins, and
catdog's own orchestration packages (:data:`RUNNER_PACKAGES`), which decide how a stage is run,
watched and recorded, not what it computes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PROJECT",
    "RUNNER_PACKAGES",
    "STAGE_PACKAGES",
    "code_deps",
    "is_runner_module",
    "module_file",
]

PROJECT = Path(__file__).resolve().parents[1]
#: The packages whose files count as a stage's code.
STAGE_PACKAGES: tuple[str, ...] = ("catdog", "tasks")
#: Packages inside ``catdog`` that are not stage code: the command line, servers, MLflow, state.
RUNNER_PACKAGES: tuple[str, ...] = (
    "catdog.cli",
    "catdog.servers",
    "catdog.tracking",
    "catdog.workspace",
)


def module_file(module: str, root: Path = PROJECT) -> Path | None:
    """The file of ``module`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``), None if not here."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``node``, at any depth, but those made for type checkers only."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    typing_only = isinstance(node, ast.If) and _is_type_checking(node.test)
    for child in node.orelse if typing_only else ast.iter_child_nodes(node):  # type: ignore[attr-defined]
        yield from _imports(child)


def imported_modules(path: Path, root: Path = PROJECT) -> set[str]:
    """The project modules (of :data:`STAGE_PACKAGES`) that the file at ``path`` imports."""
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif node.module and node.level == 0:
            # `from a import b`: b is a module of package a, or a name defined in a
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if _is_stage_code(name) and module_file(name, root) is not None:
                found.add(name)
    return found


def is_runner_module(module: str) -> bool:
    """True for a module of :data:`RUNNER_PACKAGES` (or one of those packages itself)."""
    return any(module == runner or module.startswith(runner + ".") for runner in RUNNER_PACKAGES)


def _is_stage_code(module: str) -> bool:
    return module.split(".")[0] in STAGE_PACKAGES and not is_runner_module(module)


def _with_packages(module: str) -> list[str]:
    """``a.b.c`` with the packages importing it runs first: ``a``, ``a.b``, ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def code_deps(module: str, root: Path = PROJECT) -> tuple[str, ...]:
    """Every project file that importing ``module`` runs, as sorted paths relative to ``root``."""
    files: dict[str, Path] = {}
    pending = [module]
    while pending:
        for part in _with_packages(pending.pop()):
            path = module_file(part, root)
            if part not in files and path is not None:
                files[part] = path
                pending.extend(imported_modules(path, root))
    return tuple(sorted(path.relative_to(root).as_posix() for path in files.values()))
