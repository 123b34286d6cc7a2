"""Saving and loading the stages' Keras models (``.keras`` files, loaded in safe mode)."""

from __future__ import annotations

from pathlib import Path

import keras

__all__ = ["load_model"]


def load_model(path: Path) -> keras.Model:
    """Load a ``.keras`` model saved by a stage, with ``safe_mode=True``."""
    return keras.saving.load_model(path, safe_mode=True)
