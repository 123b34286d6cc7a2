"""Near-duplicate detection: 64-bit difference hashes (dHash) and their Hamming-distance groups.

A difference hash shrinks a picture to 9x8 grey pixels and keeps one bit per pair of horizontal
neighbours (is the left one brighter?). Resizing or re-encoding a photo barely moves those
comparisons, so copies of one photo have hashes a few bits apart while unrelated photos differ in
about half of the 64 bits. :func:`group_near_duplicates` joins hashes within ``max_distance`` bits
into groups (connected components), so that a split can keep each group together.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np
from PIL import Image

__all__ = [
    "HASH_BITS",
    "group_near_duplicates",
    "hamming_distance",
    "hash_file",
    "pairwise_distances",
    "perceptual_hash",
]

HASH_BITS = 64
_WIDTH, _HEIGHT = 9, 8  # 8 comparisons per row, 8 rows
_FILTER = Image.Resampling.LANCZOS  # fixed, so a hash never depends on Pillow's defaults
_BLOCK_ELEMENTS = 1 << 22  # pairwise distances computed ~4M at a time (32 MiB of uint64)
_MASK64 = (1 << HASH_BITS) - 1


def perceptual_hash(image: Image.Image) -> int:
    """Return the 64-bit difference hash (dHash) of a picture.

    The picture is converted to grayscale, resized to 9x8 pixels with a Lanczos filter, and each
    bit says whether a pixel is brighter than its right-hand neighbour. Bits are read row by row,
    the first comparison being the most significant bit (as the ``imagehash`` package does).

    Args:
        image: Any Pillow image; palette, alpha and other modes are converted to RGB first.

    Returns:
        The hash, an integer in ``[0, 2**64)``.
    """
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    grey = image.convert("L").resize((_WIDTH, _HEIGHT), _FILTER)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hash_file(path: str | PathLike[str]) -> int:
    """Return the difference hash of an image file, fully decoded and converted to RGB.

    Args:
        path: An image file Pillow can read.

    Returns:
        The 64-bit hash of :func:`perceptual_hash`.

    Raises:
        OSError: The file cannot be read or decoded (Pillow's ``UnidentifiedImageError`` too).
    """
    with Image.open(path) as image:
        image.load()
        return perceptual_hash(image.convert("RGB"))


def hamming_distance(a: int, b: int) -> int:
    """Return the number of bits in which two 64-bit hashes differ."""
    return ((a ^ b) & _MASK64).bit_count()


def _as_uint64(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    values = list(hashes) if not isinstance(hashes, np.ndarray) else hashes
    if isinstance(values, np.ndarray) and values.dtype == np.uint64:
        return values.ravel()
    for value in values:
        if not 0 <= int(value) <= _MASK64:
            raise ValueError(f"hash {value!r} is not a 64-bit unsigned integer")
    return np.array([int(v) for v in values], dtype=np.uint64)


if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)

else:  # pragma: no cover - numpy 1.x

    def _popcount(x: np.ndarray) -> np.ndarray:
        m1, m2 = np.uint64(0x5555555555555555), np.uint64(0x3333333333333333)
        m4, h01 = np.uint64(0x0F0F0F0F0F0F0F0F), np.uint64(0x0101010101010101)
        x = x - ((x >> np.uint64(1)) & m1)
        x = (x & m2) + ((x >> np.uint64(2)) & m2)
        x = (x + (x >> np.uint64(4))) & m4
        return ((x * h01) >> np.uint64(56)).astype(np.uint8)


def pairwise_distances(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    """Return the full matrix of Hamming distances between hashes (n x n, uint8).

    Meant for small sets and tests; :func:`group_near_duplicates` never builds the whole matrix.
    """
    values = _as_uint64(hashes)
    return _popcount(values[:, None] ^ values[None, :]).astype(np.uint8)


def _close_pairs(values: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` whose hashes are at most ``max_distance`` bits apart."""
    n = len(values)
    firsts, seconds = [], []
    start = 0
    while start < n:
        rows = max(1, min(n - start, _BLOCK_ELEMENTS // max(n - start, 1)))
        block = values[start : start + rows, None] ^ values[None, start:]
        i, j = np.nonzero(_popcount(block) <= max_distance)
        upper = j > i  # column offset is `start` too, so compare offsets directly
        firsts.append(i[upper] + start)
        seconds.append(j[upper] + start)
        start += rows
    if not firsts:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    return np.concatenate(firsts), np.concatenate(seconds)


def _components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Union-find over the edges, vectorised: each node ends up labelled by its component's
    smallest index (hooking larger roots under smaller ones, then compressing paths)."""
    parent = np.arange(n)
    while True:
        a, b = parent[first], parent[second]
        if np.array_equal(a, b):
            return parent
        low, high = np.minimum(a, b), np.maximum(a, b)
        np.minimum.at(parent, high, low)  # hook: a root's parent becomes the smaller root
        while True:  # compress: point every node at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def group_near_duplicates(hashes: Sequence[int] | np.ndarray, max_distance: int = 4) -> np.ndarray:
    """Group hashes into near-duplicate sets: connected components of "distance <= max_distance".

    Grouping is transitive: if ``a`` is close to ``b`` and ``b`` to ``c``, all three share a group
    even when ``a`` and ``c`` are further apart. Distances are computed block by block with numpy
    (XOR and popcount), which takes well under a second for ten thousand hashes.

    Args:
        hashes: 64-bit hashes (see :func:`perceptual_hash`), one per image.
        max_distance: Largest Hamming distance (0-64) still counted as the same picture;
            0 groups identical hashes only.

    Returns:
        One group id per input (int64): the index of the group's first member in ``hashes``, so
        the result depends only on the hashes and their order; singletons get their own index.

    Raises:
        ValueError: ``max_distance`` is outside 0-64, or a hash is not a 64-bit unsigned integer.
    """
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be between 0 and {HASH_BITS}, got {max_distance}")
    values = _as_uint64(hashes)
    n = len(values)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    # Identical hashes are one group for free; compare only the distinct ones.
    unique, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.ravel()
    first, second = _close_pairs(unique, max_distance)
    component = _components(len(unique), first, second)[inverse]
    smallest = np.full(len(unique), n, dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(n, dtype=np.int64))
    return smallest[component]
