"""Split: a stratified, seeded train/validation/test manifest in which no content is repeated.

Exact copies (same SHA-256) are kept once, and near-duplicates (resized or re-encoded copies,
found by :mod:`catdog.dedupe`) are kept together: a group of near-duplicates goes to one split as
a unit, so no photo of the test split has a twin in the training split.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from catdog.dedupe import group_near_duplicates, perceptual_hash
from catdog.errors import SplitError
from catdog.manifest import EXTRA_COLUMNS, MANIFEST_COLUMNS
from catdog.vocabulary import LABELS, SPLITS

__all__ = ["SCAN_COLUMNS", "build_manifest", "check_splits", "scan_images"]

SCAN_COLUMNS: tuple[str, ...] = ("path", "label", "sha256", "phash", "group")


def _hashes(path: Path, perceptual: bool) -> tuple[str, str]:
    """SHA-256 of the file and, when asked, its difference hash as 16 hex digits."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if not perceptual:
        return sha, ""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            phash = perceptual_hash(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode the image to hash it: {error}") from error
    return sha, f"{phash:016x}"


def _exact_groups(shas: Sequence[str]) -> list[int]:
    """Group ids by identical content: the index of the first row with the same hash."""
    first: dict[str, int] = {}
    return [first.setdefault(sha, i) for i, sha in enumerate(shas)]


def scan_images(
    raw_dir: Path,
    root: Path,
    *,
    near_duplicates: bool = True,
    max_distance: int = 4,
    workers: int = 0,
) -> pd.DataFrame:
    """List the images of ``raw_dir/<label>/`` with their content and perceptual hashes.

    Every image is read once in a pool of threads (Pillow decodes outside the GIL), fully
    decoded and hashed; near-duplicates are then grouped across both labels, so that a picture
    filed under both labels can be recognised by :func:`build_manifest`.

    Args:
        raw_dir: The ingested images, one folder per label.
        root: Paths in the result are relative to this folder (the workspace).
        near_duplicates: Decode the images and group near-duplicates by difference hash; when
            false, nothing is decoded, ``phash`` is empty and groups are exact copies only.
        max_distance: Largest Hamming distance (in bits, of 64) between the hashes of two
            images counted as the same picture.
        workers: Hashing threads (0: one per core).

    Returns:
        A frame with columns path, label, sha256, phash (16 hex digits, or empty) and group
        (int: the row index of the group's first member), sorted by path.

    Raises:
        ValueError: An image cannot be decoded, or ``max_distance`` is outside 0-64.
    """
    files = []
    for label in LABELS:
        folder = raw_dir / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append((path, label))
    paths = [path for path, _ in files]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            hashes = list(pool.map(_hashes, paths, [near_duplicates] * len(paths)))
    else:
        hashes = [_hashes(path, near_duplicates) for path in paths]
    shas = [sha for sha, _ in hashes]
    phashes = [phash for _, phash in hashes]
    if near_duplicates:
        groups = group_near_duplicates([int(h, 16) for h in phashes], max_distance).tolist()
    else:
        groups = _exact_groups(shas)
    return pd.DataFrame(
        {
            "path": [path.relative_to(root).as_posix() for path in paths],
            "label": [label for _, label in files],
            "sha256": shas,
            "phash": phashes,
            "group": np.asarray(groups, dtype=np.int64),
        },
        columns=list(SCAN_COLUMNS),
    )


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:  # every split gets at least one image of each class when it can
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = n - n_val - n_test
    return n_train, n_val, n_test


def _checked_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = [float(f) for f in fractions]
    if len(values) != len(SPLITS) or any(f < 0 for f in values):
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
    if not np.isclose(sum(values), 1.0, atol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {sum(values):g} ({fractions})")
    return values[0], values[1], values[2]


def _checked_counts(counts: Sequence[int]) -> tuple[int, int, int]:
    values = [int(c) for c in counts]
    if len(values) != len(SPLITS) or any(
        c < 0 or c != v for c, v in zip(values, counts, strict=True)
    ):
        raise ValueError(f"counts must be three non-negative integers, got {counts}")
    return values[0], values[1], values[2]


def _check_available(counts: tuple[int, int, int], label: str, available: int) -> None:
    """Raise when the per-class counts ask for more images of ``label`` than there are."""
    left = available
    for index, (split, wanted) in enumerate(zip(SPLITS, counts, strict=True)):
        if wanted > left:
            before = ", ".join(
                f"{s} {c}" for s, c in zip(SPLITS[:index], counts[:index], strict=True)
            )
            after = f" after {before}" if before else ""
            raise ValueError(
                f"split counts {counts}: the {split} split needs {wanted} {label} images, but "
                f"only {left} of the {available} usable {label} images are left{after}"
            )
        left -= wanted


def _largest_deficit(filled: list[int], targets: tuple[int, int, int]) -> int:
    deficits = [target - n for target, n in zip(targets, filled, strict=True)]
    return deficits.index(max(deficits))


def _select_prefix(sizes: Sequence[int], total: int) -> list[int]:
    """Indices of groups adding up to ``total`` images, taken along the shuffled order.

    Groups that would overshoot are skipped; if the order ends short of the total, a skipped
    group is swapped in for the last single images taken, when there are enough of them.
    """
    selected: list[int] = []
    skipped: list[int] = []
    taken = 0
    for index, size in enumerate(sizes):
        if taken == total:
            break
        if taken + size <= total:
            selected.append(index)
            taken += size
        else:
            skipped.append(index)
    if taken == total:
        return selected
    singles = [index for index in selected if sizes[index] == 1]
    for index in skipped:
        surplus = sizes[index] - (total - taken)
        if surplus <= len(singles):
            dropped = set(singles[len(singles) - surplus :])
            return sorted([i for i in selected if i not in dropped] + [index])
    return selected


def _assign_groups(
    sizes: Sequence[int], targets: tuple[int, int, int], use_all: bool
) -> tuple[list[int], list[int]]:
    """Give each group (sizes in the shuffled order) a split index, or -1 when unused.

    Without ``use_all`` (counts), the groups taken are a prefix of the shuffled order (see
    :func:`_select_prefix`). Groups of several images are placed first, largest first, each in
    the split furthest below its target (relative to the target) among those it fits in whole;
    single images then fill train, then validation, then test, in the shuffled order. So with
    no near-duplicates, a split is a slice of one seeded permutation. With ``use_all``
    (fractions), a group that fits nowhere overshoots the split furthest below its target;
    with counts, holes left by such a group are filled with unused single images.
    """
    n_splits = len(targets)
    assignment = [-1] * len(sizes)
    filled = [0] * n_splits
    selected = list(range(len(sizes))) if use_all else _select_prefix(sizes, sum(targets))
    # near-duplicate groups, largest first, spread in proportion to the targets
    for index in sorted((i for i in selected if sizes[i] > 1), key=lambda i: -sizes[i]):
        size = sizes[index]
        fits = [s for s in range(n_splits) if filled[s] + size <= targets[s]]
        if fits:
            choice = max(fits, key=lambda s: ((targets[s] - filled[s]) / targets[s], -s))
        elif use_all:
            choice = _largest_deficit(filled, targets)
        else:
            continue
        assignment[index] = choice
        filled[choice] += size
    singles = [index for index in selected if sizes[index] == 1]
    if not use_all:  # reserves for holes left by a group that fitted nowhere
        chosen = set(selected)
        singles += [i for i, size in enumerate(sizes) if size == 1 and i not in chosen]
    for index in singles:
        choice = next((s for s in range(n_splits) if filled[s] < targets[s]), -1)
        if choice < 0:
            if not use_all:
                break
            choice = _largest_deficit(filled, targets)
        assignment[index] = choice
        filled[choice] += 1
    return assignment, filled


def build_manifest(
    images: pd.DataFrame,
    *,
    fractions: tuple[float, float, float] | None = None,
    counts: tuple[int, int, int] | None = None,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Assign distinct images to splits, stratified by label, near-duplicates kept together.

    Identical content (same hash) is kept once (the first copy by path), so it can never land
    in two splits. Content found under both labels, and every near-duplicate group (``group``
    column) holding both labels, is dropped altogether, since its label is unknown. Each class's
    groups are shuffled with the seed and go to a split as a unit, so a group never straddles
    two splits. Sizes are counted in images: groups of several images are spread over the
    splits first, each to the split furthest below its target, then single images fill train,
    validation and test in the shuffled order (without near-duplicates, exactly the seeded
    permutation of earlier versions).

    Args:
        images: Frame with columns path, label, sha256 and optionally phash and group (see
            :func:`scan_images`); without group, only exact copies are grouped.
        fractions: Train, validation and test fractions (summing to 1) of every class's
            images; all usable images are used.
        counts: Train, validation and test images per class (the book: 1000, 500, 1000),
            taken from the shuffled groups; the images left over are not used.
        seed: Seed of the shuffle; the same seed and images give the same manifest, whatever
            the order of the rows of ``images``.

    Returns:
        The manifest (columns path, label, split, sha256, group, phash; sorted by split, label,
        path) and counts for the report: ``duplicates`` (exact copies dropped),
        ``conflicting_labels`` (images dropped as found under both labels, directly or through
        their near-duplicate group), ``near_duplicate_groups`` and ``near_duplicate_images``
        (groups of more than one distinct usable image, and the images in them), and
        ``unused`` (usable images left out by ``counts``).

    Raises:
        ValueError: Not exactly one of fractions and counts is given, or they are malformed,
            or counts ask for more images of a class than there are (naming the split and
            class), or near-duplicate groups cannot be packed into exactly these counts.
    """
    if (fractions is None) == (counts is None):
        raise ValueError("give exactly one of fractions and counts")
    sizes_per_class = None if counts is None else _checked_counts(counts)
    shares = None if fractions is None else _checked_fractions(fractions)

    unique, dropped = _usable_images(images)
    parts = []
    for label_index, label in enumerate(LABELS):
        rows = unique[unique["label"] == label]
        if sizes_per_class is not None:
            _check_available(sizes_per_class, label, len(rows))
            targets = sizes_per_class
        else:
            assert shares is not None
            targets = _split_sizes(len(rows), shares)
        split = _assign_label(rows, label, targets, seed=[seed, label_index], exact=sizes_per_class)
        dropped["unused"] += int(split.isna().sum())
        parts.append(rows.assign(split=split)[split.notna()])
    columns = [*MANIFEST_COLUMNS, *EXTRA_COLUMNS]
    manifest = pd.concat(parts, ignore_index=True)
    manifest["split"] = pd.Categorical(manifest["split"], categories=SPLITS, ordered=True)
    manifest = manifest.sort_values(["split", "label", "path"]).reset_index(drop=True)
    manifest["split"] = manifest["split"].astype(str)
    return manifest[columns], dropped


def _usable_images(images: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The distinct images whose label is certain (in path order, with a group each), and the
    counts of what was dropped or grouped, for the report."""
    frame = images.copy()
    if "phash" not in frame.columns:
        frame["phash"] = ""
    frame = frame.sort_values(["path", "label", "sha256"], kind="mergesort").reset_index(drop=True)
    if "group" in frame.columns:
        frame["group"] = frame["group"].astype("int64")
    else:
        frame["group"] = np.asarray(_exact_groups(frame["sha256"].tolist()), dtype=np.int64)
    labels_per_hash = frame.groupby("sha256")["label"].nunique()
    labels_per_group = frame.groupby("group")["label"].nunique()
    mixed_hash = frame["sha256"].isin(labels_per_hash[labels_per_hash > 1].index)
    mixed_group = frame["group"].isin(labels_per_group[labels_per_group > 1].index)
    conflicting = mixed_hash | mixed_group
    usable = frame[~conflicting]
    unique = usable.drop_duplicates("sha256", keep="first")
    group_sizes = unique.groupby("group").size()
    dropped = {
        "duplicates": len(usable) - len(unique),
        "conflicting_labels": int(conflicting.sum()),
        "near_duplicate_groups": int((group_sizes > 1).sum()),
        "near_duplicate_images": int(group_sizes[group_sizes > 1].sum()),
        "unused": 0,
    }
    return unique, dropped


def _assign_label(
    rows: pd.DataFrame,
    label: str,
    targets: tuple[int, int, int],
    *,
    seed: list[int],
    exact: tuple[int, int, int] | None,
) -> pd.Series:
    """Each image's split (NaN: unused) for one class: its groups shuffled with ``seed`` and
    packed to ``targets``; with ``exact`` counts, exactly those or a ValueError."""
    keys = pd.unique(rows["group"])  # in the order of each group's first path
    sizes = rows.groupby("group", sort=False).size().loc[keys].to_numpy()
    order = np.random.default_rng(seed).permutation(len(keys))
    choice, filled = _assign_groups(sizes[order].tolist(), targets, use_all=exact is None)
    if exact is not None and tuple(filled) != targets:
        short = next(i for i, (n, t) in enumerate(zip(filled, targets, strict=True)) if n != t)
        raise ValueError(
            f"split counts {exact}: cannot fill the {SPLITS[short]} split with "
            f"exactly {targets[short]} {label} images without breaking up near-duplicate "
            f"groups (it got {filled[short]})"
        )
    split_of_group = {
        keys[g]: SPLITS[c] for g, c in zip(order.tolist(), choice, strict=True) if c >= 0
    }
    return rows["group"].map(split_of_group)


def check_splits(manifest: pd.DataFrame, dropped: Mapping[str, int]) -> None:
    """Refuse a manifest no model can learn from or be judged on: each split needs both classes.

    Raises:
        SplitError: A split lacks a class (too few distinct images, or all of them copies or
            filed under both labels); the message gives the numbers and what to do.
    """
    present = set(zip(manifest["split"], manifest["label"], strict=True))
    missing = [(s, label) for s in SPLITS for label in LABELS if (s, label) not in present]
    if not missing:
        return
    usable = ", ".join(f"{label} {int((manifest['label'] == label).sum())}" for label in LABELS)
    gaps = "; ".join(
        f"{s} has no {' and no '.join(label for t, label in missing if t == s)} image"
        for s in SPLITS
        if any(t == s for t, _ in missing)
    )
    raise SplitError(
        f"data/raw: too few distinct images to split ({gaps}): usable images {usable}, after "
        f"dropping {dropped.get('duplicates', 0)} exact copies and "
        f"{dropped.get('conflicting_labels', 0)} images found under both labels; give "
        "data.source at least 3 distinct images of each class"
    )
