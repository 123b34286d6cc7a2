"""Saving and loading the stages' Keras models (``.keras`` files, loaded in safe mode).

A ``.keras`` file is a zip of the model's config, weights and metadata. Keras stamps it with the
time of saving (``date_saved``, and each zip entry's date) and numbers shared objects by their
memory address, so saving the same model twice gives different bytes and a different DVC hash.
:func:`save_model` writes the same archive without them: its bytes depend on the model alone.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from pathlib import Path

import keras

from catdog.io import atomic_file

__all__ = ["load_model", "save_model"]

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold
_SHARED_ID = re.compile(rb'"shared_object_id": (\d+)')


def _renumber_shared_objects(config: bytes) -> bytes:
    """Number shared objects 0, 1, 2... in order of appearance instead of by memory address."""
    numbers: dict[bytes, int] = {}

    def renumber(match: re.Match[bytes]) -> bytes:
        number = numbers.setdefault(match.group(1), len(numbers))
        return b'"shared_object_id": %d' % number

    return _SHARED_ID.sub(renumber, config)


def _canonical_entry(name: str, data: bytes) -> bytes:
    if name == "metadata.json":
        metadata = json.loads(data)
        metadata.pop("date_saved", None)
        return json.dumps(metadata, sort_keys=True).encode()
    if name == "config.json":
        return _renumber_shared_objects(data)
    return data


def save_model(model: keras.Model, path: Path) -> Path:
    """Save ``model`` atomically as a ``.keras`` file whose bytes depend only on the model."""
    with tempfile.TemporaryDirectory(prefix="catdog-save-") as scratch:
        plain = Path(scratch) / "model.keras"
        model.save(plain)
        with (
            atomic_file(path) as tmp,  # replaced once the archive below is closed
            zipfile.ZipFile(plain) as source,
            zipfile.ZipFile(tmp, "w") as target,
        ):
            for info in source.infolist():
                entry = zipfile.ZipInfo(info.filename, date_time=_FIXED_DATE)
                entry.compress_type = info.compress_type
                entry.external_attr = 0o644 << 16
                target.writestr(entry, _canonical_entry(info.filename, source.read(info)))
    return path


def load_model(path: Path) -> keras.Model:
    """Load a ``.keras`` model saved by a stage, with ``safe_mode=True``."""
    return keras.saving.load_model(path, safe_mode=True)
