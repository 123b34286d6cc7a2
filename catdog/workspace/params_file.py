"""``params.yaml`` as the one record of a run's params: presets and ``-S`` overrides go into it.

``catdog run --params PRESET -S key=value`` makes ``params.yaml`` hold the defaults, with the keys
``PRESET`` changes (a preset is an overlay: ``params-book.yaml`` holds only what the book does
differently) and then the overrides, written the way ``dvc exp run -S`` writes them (DVC's own
round-trip YAML writer, which keeps the file's comments), so ``dvc.lock`` always records the
params the run used. Everything is checked first: an unknown key or a bad value, in the preset
or an override, or an empty preset, changes nothing and fails naming ``-S`` or the file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from catdog.errors import ParamsError
from catdog.io import atomic_file
from catdog.params import (
    Params,
    flat_params,
    missing_keys,
    parse_params,
    read_params_file,
    unknown_key,
)

__all__ = [
    "PARAMS_FILE",
    "ParamsChangedError",
    "ParamsUpdate",
    "apply_params",
    "preset_values",
    "require_params_unchanged",
    "resolve_params",
]

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class ParamsUpdate:
    """The params a run uses, and what was done to ``params.yaml`` to get them."""

    params: Params
    changed: bool  # params.yaml was rewritten
    preset: str = ""  # the preset laid over the defaults in it, if any
    overrides: tuple[str, ...] = ()


def _override_key(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"-S {text}: expected KEY=VALUE, e.g. -S classifier.epochs=5")
    key = key.strip().lstrip("+~")
    problem = unknown_key(key)
    if problem:
        raise ParamsError(f"-S {text}: {problem}")
    return key


def _apply_overrides(path: Path, overrides: Sequence[str]) -> None:
    """Apply the overrides to the YAML file at ``path`` as ``dvc exp run -S`` does."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    for text in overrides:  # one at a time, so a bad one is named
        try:
            apply_overrides(path, [text])
        except InvalidArgumentError as error:
            cause = str(error.__cause__ or error).splitlines()[0]
            raise ParamsError(f"-S {text}: not a valid override ({cause})") from None


def _set_values(path: Path, values: dict[str, object]) -> None:
    """Set dotted keys in the YAML file at ``path``, keeping its comments and layout."""
    from dvc.utils.serialize import modify_yaml
    from ruamel.yaml.comments import CommentedSeq

    with modify_yaml(path) as data:
        for dotted, value in values.items():
            *sections, leaf = dotted.split(".")
            node = data
            for section in sections:
                node = node.setdefault(section, {})
            if isinstance(value, list | tuple):
                value = CommentedSeq(value)
                value.fa.set_flow_style()  # [1000, 500, 1000], as -S writes a list
            node[leaf] = value


def preset_values(preset: Path) -> dict[str, object]:
    """The dotted keys a preset sets, and their values; every key must be a params key.

    Raises:
        ParamsError: The file is missing, malformed, empty, or names an unknown key.
    """
    shown = str(preset)
    values = flat_params(read_params_file(preset, display=shown))
    if not values:
        raise ParamsError(
            f"{shown}: holds no params; a preset holds the keys it changes, e.g. "
            "`scratch: {epochs: 40}`"
        )
    for key in values:
        problem = unknown_key(key)
        if problem:
            raise ParamsError(f"{shown}: {problem}")
    return values


def resolve_params(
    source: Path,
    overrides: Sequence[str] = (),
    *,
    shown: str | None = None,
    preset: Path | None = None,
    values: Mapping[str, object] | None = None,
    values_origin: str = "the run's parameters",
) -> tuple[Params, bytes]:
    """The params of ``source`` (a full params file), or the defaults with ``preset`` laid over
    them, with ``overrides`` applied, then ``values`` (dotted keys, typed values: a deployed
    run's form); and the YAML text that holds them, laid out as ``source``.

    Nothing is written; ``shown`` names ``source`` in errors (default: its path).

    Raises:
        ParamsError: A missing or invalid file, or a bad override; the message names
            ``-S KEY=VALUE`` or the file, and the key.
    """
    shown = shown or str(source)
    raw = read_params_file(source, display=shown)  # missing or malformed: fail naming it
    origins: dict[str, str] = {}
    changes: dict[str, object] = {}
    if preset is not None:
        laid = preset_values(preset)
        current = flat_params(raw)
        defaults = {**flat_params(Params().model_dump(mode="json")), **laid}
        # both sides plain YAML values (the JSON dump writes tuples as lists)
        changes = {k: v for k, v in defaults.items() if current.get(k, object()) != v}
        origins = dict.fromkeys(laid, str(preset))
    origins |= {_override_key(text): f"-S {text}" for text in overrides}
    for key in values or {}:
        problem = unknown_key(key)
        if problem:
            raise ParamsError(f"{values_origin}: {problem}")
    origins |= dict.fromkeys(values or {}, values_origin)
    with tempfile.TemporaryDirectory(prefix="catdog-params-") as scratch:
        draft = Path(scratch) / PARAMS_FILE
        shutil.copyfile(source, draft)
        if changes:
            _set_values(draft, changes)
        _apply_overrides(draft, overrides)
        differing = _differing(draft, values or {}, shown)
        if differing:  # only these: an unchanged value keeps its layout in the file
            _set_values(draft, differing)
        raw = read_params_file(draft, display=shown)
        _require_every_key(raw, shown)
        params = parse_params(raw, origin=shown, origins=origins)
        return params, draft.read_bytes()


def _differing(path: Path, values: Mapping[str, object], shown: str) -> dict[str, object]:
    """The ``values`` the params file at ``path`` does not already hold."""
    if not values:
        return {}
    current = flat_params(read_params_file(path, display=shown))
    return {k: v for k, v in values.items() if current.get(k, object()) != v}


def _require_every_key(raw: dict, shown: str) -> None:
    """Refuse an empty or partial ``params.yaml`` before a run records it."""
    what = "restore it (`git checkout params.yaml`) and change what you need with -S"
    if not raw:
        raise ParamsError(f"{shown}: holds no params; {what}")
    missing = missing_keys(raw)
    if missing:
        listed = ", ".join(missing[:4]) + (
            f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        )
        raise ParamsError(
            f"{shown}: missing {listed}; a params file holds every key (dvc.lock records each "
            f"one a stage reads): {what}"
        )


def apply_params(
    workspace: Path,
    preset: Path | None = None,
    overrides: Sequence[str] = (),
    *,
    check: Callable[[Params], None] | None = None,
    values: Mapping[str, object] | None = None,
    values_origin: str = "the run's parameters",
) -> ParamsUpdate:
    """Make ``params.yaml`` hold the defaults with ``preset`` over them (no preset: itself), with
    ``overrides`` applied.

    Nothing is written unless the result is valid, passes ``check`` (e.g. that the data source
    and weights file exist) and differs from what is there.

    Raises:
        ParamsError: As :func:`resolve_params`; or whatever ``check`` raises.
    """
    target = workspace / PARAMS_FILE
    params, text = resolve_params(
        target,
        overrides,
        shown=PARAMS_FILE,
        preset=preset,
        values=values,
        values_origin=values_origin,
    )
    if check is not None:
        check(params)
    changed = not target.is_file() or target.read_bytes() != text
    if changed:
        with atomic_file(target) as tmp:
            tmp.write_bytes(text)
    shown_preset = str(preset) if preset is not None else ""
    return ParamsUpdate(params, changed, shown_preset, tuple(overrides))


class ParamsChangedError(ParamsError):
    """``params.yaml`` changed while a run was using it."""


def require_params_unchanged(workspace: Path, snapshot: bytes, stage: str) -> None:
    """Stop a run whose ``params.yaml`` changed underneath it, before a stage is recorded or run.

    A stage runs with the params it read when it started; ``dvc.lock`` records the file as it is
    when the stage is committed. An edit in between would make the record lie, so the stage is
    not recorded and the run stops.

    Raises:
        ParamsChangedError: The file differs from ``snapshot``.
    """
    target = workspace / PARAMS_FILE
    now = target.read_bytes() if target.is_file() else b""
    if now != snapshot:
        raise ParamsChangedError(
            f"{PARAMS_FILE} changed while the run was using it: {stage} is not recorded in "
            "dvc.lock and nothing after it ran; run again to run with the new values"
        )
