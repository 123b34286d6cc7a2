"""A grid of images with titles (augmented views, a model's worst mistakes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catdog.plots.figure import new_figure, save_png

__all__ = ["plot_image_grid"]


def plot_image_grid(
    images: np.ndarray,
    path: Path,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> Path:
    """Plots a grid of RGB thumbnails, optionally with a small caption each.

    Args:
        images: ``uint8`` array of shape ``(N, H, W, 3)``, N >= 1.
        path: Destination PNG file; parent directories are created.
        titles: Optional captions, one per image.
        ncols: Maximum number of columns (fewer are used when N < ncols).
        title: Optional figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``images`` is not a non-empty ``uint8`` ``(N, H, W, 3)``
            array, ``titles`` has the wrong length, or ``ncols`` < 1.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W, 3) with N >= 1, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    n_images, height, width = arr.shape[:3]
    if titles is not None and len(titles) != n_images:
        raise ValueError(f"titles has {len(titles)} entries for {n_images} images")

    cols = min(int(ncols), n_images)
    rows = math.ceil(n_images / cols)
    # Explicit layout in inches: the longer image side is THUMB_IN, each cell has
    # room for a caption above the image, and GAP_IN separates the cells.
    thumb_in, gap_in = 1.6, 0.08
    scale = thumb_in / max(height, width)
    img_w, img_h = width * scale, height * scale
    caption_h = 0.22 if titles is not None else 0.0
    title_h = 0.45 if title else 0.0
    fig_w = cols * (img_w + gap_in) + gap_in
    fig_h = title_h + rows * (caption_h + img_h + gap_in) + gap_in
    fig = new_figure(fig_w, fig_h)
    for idx in range(n_images):
        row, col = divmod(idx, cols)
        left = gap_in + col * (img_w + gap_in)
        top = fig_h - title_h - gap_in - row * (caption_h + img_h + gap_in) - caption_h
        ax = fig.add_axes((left / fig_w, (top - img_h) / fig_h, img_w / fig_w, img_h / fig_h))
        ax.imshow(arr[idx], interpolation="antialiased")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[idx]), fontsize=7, pad=2)
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.1 / fig_h, va="top")
    return save_png(fig, path)
