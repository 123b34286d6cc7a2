"""Grids of images with titles (augmented views, a model's worst mistakes, a layer's maps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catdog.plots.figure import new_figure, save_png

__all__ = ["plot_image_grid", "plot_image_rows"]


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


def plot_image_rows(
    rows: Sequence[tuple[str, np.ndarray]],
    path: Path,
    *,
    title: str,
    captions: Sequence[Sequence[str]] | None = None,
    cmap: str = "viridis",
    thumb_in: float = 1.1,
) -> Path:
    """Plots one labelled row of pictures per entry (a layer's maps, its filters' patterns).

    Args:
        rows: ``(label, pictures)`` per row; pictures are ``(n, h, w)`` (drawn with ``cmap``)
            or ``(n, h, w, 3)`` uint8 RGB; rows may differ in count and size.
        path: Destination PNG file, written atomically.
        title: The figure's title (it may hold a second line).
        captions: Optional small captions per picture, row by row.
        cmap: Colour map of single-channel pictures.
        thumb_in: Size of each picture in inches.

    Returns:
        ``path``.
    """
    if not rows or any(len(pictures) == 0 for _, pictures in rows):
        raise ValueError("every row needs at least one picture")
    cols = max(len(pictures) for _, pictures in rows)
    label_in, gap_in, caption_in = 1.2, 0.06, 0.18 if captions else 0.0
    title_in = 0.3 + 0.2 * title.count("\n")
    cell_in = thumb_in + gap_in
    fig_w = max(label_in + cols * cell_in + gap_in, 0.075 * max(map(len, title.split("\n"))))
    fig_h = title_in + len(rows) * (cell_in + caption_in) + gap_in
    fig = new_figure(fig_w, fig_h)
    for r, (label, pictures) in enumerate(rows):
        top = fig_h - title_in - r * (cell_in + caption_in) - caption_in
        fig.text(0.1 / fig_w, (top - thumb_in / 2) / fig_h, label, fontsize=9, va="center")
        for c, picture in enumerate(pictures):
            left = label_in + c * cell_in
            box = (left / fig_w, (top - thumb_in) / fig_h, thumb_in / fig_w, thumb_in / fig_h)
            ax = fig.add_axes(box)
            ax.imshow(picture, cmap=None if np.ndim(picture) == 3 else cmap)
            ax.set_axis_off()
            if captions:
                ax.set_title(str(captions[r][c]), fontsize=6, pad=1)
    fig.suptitle(title, fontsize=10, y=1.0 - 0.08 / fig_h, va="top")
    return save_png(fig, path)
