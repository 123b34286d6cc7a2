"""Split: a stratified, seeded train/validation/test manifest in which no content is repeated."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.ingest import LABELS

__all__ = ["MANIFEST_COLUMNS", "SPLITS", "build_manifest", "read_manifest", "scan_images"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scan_images(raw_dir: Path, root: Path) -> pd.DataFrame:
    """List the images of ``raw_dir/<label>/`` with their content hash.

    Args:
        raw_dir: The ingested images, one folder per label.
        root: Paths in the result are relative to this folder (the workspace).

    Returns:
        A frame with columns path, label, sha256, sorted by path.
    """
    rows = []
    for label in LABELS:
        folder = raw_dir / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                rows.append(
                    {
                        "path": path.relative_to(root).as_posix(),
                        "label": label,
                        "sha256": _sha256(path),
                    }
                )
    return pd.DataFrame(rows, columns=["path", "label", "sha256"])


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:  # every split gets at least one image of each class when it can
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = n - n_val - n_test
    return n_train, n_val, n_test


def build_manifest(
    images: pd.DataFrame, *, fractions: tuple[float, float, float], seed: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Assign every distinct image to one split, stratified by label.

    Identical content (same hash) is kept once, so it can never land in two splits; content
    found under both labels is dropped altogether, since its label is unknown.

    Args:
        images: Frame with columns path, label, sha256 (see :func:`scan_images`).
        fractions: Train, validation and test fractions (summing to 1).
        seed: Seed of the shuffle; the same seed and images give the same manifest.

    Returns:
        The manifest (columns path, label, split, sha256; sorted by split, label, path) and
        counts of what was dropped (``duplicates``, ``conflicting_labels``).
    """
    labels_per_hash = images.groupby("sha256")["label"].nunique()
    conflicting = set(labels_per_hash[labels_per_hash > 1].index)
    usable = images[~images["sha256"].isin(conflicting)].sort_values("path")
    unique = usable.drop_duplicates("sha256", keep="first")
    dropped = {
        "duplicates": len(usable) - len(unique),
        "conflicting_labels": int(images["sha256"].isin(conflicting).sum()),
    }
    parts = []
    for label_index, label in enumerate(LABELS):
        group = unique[unique["label"] == label].sort_values("path").reset_index(drop=True)
        order = np.random.default_rng([seed, label_index]).permutation(len(group))
        n_train, n_val, _ = _split_sizes(len(group), fractions)
        assignment = np.empty(len(group), dtype=object)
        assignment[order[:n_train]] = "train"
        assignment[order[n_train : n_train + n_val]] = "validation"
        assignment[order[n_train + n_val :]] = "test"
        parts.append(group.assign(split=assignment))
    manifest = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    manifest["split"] = pd.Categorical(manifest["split"], categories=SPLITS, ordered=True)
    manifest = manifest.sort_values(["split", "label", "path"]).reset_index(drop=True)
    manifest["split"] = manifest["split"].astype(str)
    return manifest[list(MANIFEST_COLUMNS)], dropped


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by the split stage and check its columns and splits."""
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise ValueError(f"{path}: not a split manifest, missing columns {sorted(missing)}")
    unknown = set(manifest["split"]) - set(SPLITS)
    if unknown:
        raise ValueError(f"{path}: unknown split names {sorted(unknown)}")
    return manifest
