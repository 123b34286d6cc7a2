"""What every figure shares: a pyplot-free figure, and saving it as a PNG atomically."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from catdog.io import atomic_file

__all__ = ["DPI", "new_figure", "save_png"]

#: Resolution of every saved figure.
DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """Creates a pyplot-free figure with its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path | str) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (parents created) and return the path."""
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path
