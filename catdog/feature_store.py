"""Reading the features stage's arrays: ``<set>.npy`` (memory-mapped) and ``<set>_targets.npy``.

Apart from :mod:`catdog.features` (which computes them with VGG16), so the stages that only read
features do not depend on that code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_features"]


def load_features(folder: Path, name: str, *, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Features and float32 targets of one set (``train``, ``train_aug``, ``validation``...)."""
    features = np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None)
    targets = np.load(folder / f"{name}_targets.npy")
    return features, targets
