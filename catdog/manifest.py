"""The split manifest: its columns, and reading it back as the later stages do.

Kept apart from :mod:`catdog.split` (which hashes and groups images to write the manifest), so the
stages that only read it do not depend on that code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from catdog.vocabulary import SPLITS

__all__ = ["EXTRA_COLUMNS", "MANIFEST_COLUMNS", "read_manifest", "split_rows"]

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "sha256")
EXTRA_COLUMNS: tuple[str, ...] = ("group", "phash")  # written after MANIFEST_COLUMNS


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by the split stage and check its columns and splits.

    Manifests with or without the ``group`` and ``phash`` columns are accepted; every column
    is read as text.
    """
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise ValueError(f"{path}: not a split manifest, missing columns {sorted(missing)}")
    unknown = set(manifest["split"]) - set(SPLITS)
    if unknown:
        raise ValueError(f"{path}: unknown split names {sorted(unknown)}")
    return manifest


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split, renumbered from 0, in manifest order (split, label, path)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    return manifest[manifest["split"] == split].reset_index(drop=True)
