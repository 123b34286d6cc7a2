#!/usr/bin/env python3
"""Pack the 2,400 shared Kaggle photos for a GPU machine that has no TensorFlow.

The device (see ``bench/gpu_book.py``) has PyTorch, NumPy and Pillow but no TensorFlow, so it
cannot run ``catdog.images.decode_resize``. Resized pixels do not fit its 64 MiB transfer limit
(2,400 x 180 x 180 x 3 bytes is 233 MB, and photos barely compress), so this packs the ORIGINAL
JPEG bytes (lossless with respect to the source, 58 MiB) into one ``.npz``; the device decodes them
with Pillow and resizes them with :func:`tf_bilinear_resize`, a NumPy copy of
``tf.image.resize(method="bilinear")`` (half-pixel centres, no antialiasing). ``--verify``
compares that path with ``catdog.images.decode_resize`` on this machine, image by image.

Split (Kaggle flat layout ``cat.N.jpg`` / ``dog.N.jpg``): train N in 0-999, validation N in
2000-2099, test N in 2100-2199, per class.

Usage::

    python bench/prepare_gpu_data.py --src ../shared/data/dogs-vs-cats-2400/train \
        --out .gpu/photos.npz [--verify]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train": range(0, 1000), "validation": range(2000, 2100), "test": range(2100, 2200)}
_NAME = re.compile(r"^(cat|dog)\.(\d+)\.jpg$")


def split_of(number: int) -> str | None:
    for split, numbers in SPLITS.items():
        if number in numbers:
            return split
    return None


def pack(src: Path, out: Path) -> dict[str, int]:
    """Write ``out`` (.npz): jpeg (uint8, all files concatenated), offsets, names, labels, split."""
    rows = []
    for path in sorted(src.iterdir()):
        match = _NAME.match(path.name)
        if match is None:
            continue
        split = split_of(int(match.group(2)))
        if split is not None:
            rows.append((split, match.group(1), int(match.group(2)), path))
    order = {name: i for i, name in enumerate(SPLITS)}
    rows.sort(key=lambda r: (order[r[0]], r[1], r[2]))
    blobs = [r[3].read_bytes() for r in rows]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8),
        offsets=offsets,
        names=np.asarray([r[3].name for r in rows]),
        labels=np.asarray([1.0 if r[1] == "dog" else 0.0 for r in rows], dtype=np.float32),
        split=np.asarray([r[0] for r in rows]),
    )
    return {s: sum(1 for r in rows if r[0] == s) for s in SPLITS}


def decode(data: bytes) -> np.ndarray:
    """JPEG bytes to uint8 RGB (H, W, 3), as ``tf.io.decode_image(..., channels=3)`` gives."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # TensorFlow's compute_interpolation_weights with half_pixel_centers=True, in float32.
    scale = np.float32(in_size) / np.float32(out_size)
    pos = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(pos)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(pos), in_size - 1).astype(np.int64)
    return lower, upper, (pos - floor).astype(np.float32)


def tf_bilinear_resize(image: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resize(image, (size, size), method="bilinear")`` in NumPy (float32 out)."""
    y0, y1, wy = _weights(image.shape[0], size)
    x0, x1, wx = _weights(image.shape[1], size)
    img = image.astype(np.float32)
    top_left, top_right = img[y0][:, x0], img[y0][:, x1]
    bottom_left, bottom_right = img[y1][:, x0], img[y1][:, x1]
    wx = wx[None, :, None]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return top + (bottom - top) * wy[:, None, None]


def load_npz(path: Path, size: int, limit: int | None = None, workers: int = 8) -> dict:
    """Decode and resize a packed file: {split: (float32 images, float32 labels, names)}."""
    data = np.load(path)
    jpeg, offsets = data["jpeg"], data["offsets"]
    names, labels, split = data["names"], data["labels"], data["split"]
    out = {}
    for name in SPLITS:
        index = np.flatnonzero(split == name)
        if limit is not None:  # keep both classes: alternate cats and dogs
            cats, dogs = index[labels[index] == 0], index[labels[index] == 1]
            index = np.sort(np.concatenate([cats[: (limit + 1) // 2], dogs[: limit // 2]]))

        def one(i: int) -> np.ndarray:
            return tf_bilinear_resize(decode(jpeg[offsets[i] : offsets[i + 1]].tobytes()), size)

        with ThreadPoolExecutor(workers) as pool:
            images = np.stack(list(pool.map(one, index)))
        out[name] = (images, labels[index].copy(), names[index].copy())
    return out


def verify(path: Path, src: Path, size: int, limit: int | None) -> None:
    """Compare the NumPy/Pillow path with catdog.images.decode_resize (TensorFlow), per image."""
    import tensorflow as tf

    from catdog.images import decode_resize

    sets = load_npz(path, size, limit)
    worst = 0.0
    mean_abs = []
    for images, _, names in sets.values():
        for image, name in zip(images, names, strict=True):
            reference = decode_resize(tf.constant(str(src / name)), size).numpy()
            diff = np.abs(reference - image)
            worst = max(worst, float(diff.max()))
            mean_abs.append(float(diff.mean()))
    print(
        f"verify: {len(mean_abs)} images, max |diff| {worst:.6g}, "
        f"mean |diff| {np.mean(mean_abs):.3g} (pixels in [0, 255])"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("../shared/data/dogs-vs-cats-2400/train"))
    parser.add_argument("--out", type=Path, default=Path(".gpu/photos.npz"))
    parser.add_argument("--size", type=int, default=180)
    parser.add_argument("--verify", action="store_true", help="compare with TensorFlow's path")
    parser.add_argument("--verify-limit", type=int, default=None, help="images per split")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = pack(args.src, args.out)
    mib = args.out.stat().st_size / 2**20
    print(f"{args.out}: {counts}, {mib:.1f} MiB in {time.perf_counter() - started:.1f} s")
    if args.verify:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        verify(args.out, args.src, args.size, args.verify_limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
