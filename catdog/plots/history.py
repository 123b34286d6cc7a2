"""A model's training history: loss and accuracy per epoch, training and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catdog.plots.figure import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_history"]


def _history_series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray | None:
    """Returns ``history[key]`` as a float array, or None when absent or empty."""
    if key not in history:
        return None
    values = np.asarray(history[key], dtype=np.float64).ravel()
    return values if values.size else None


def plot_history(
    history: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
) -> Path:
    """Plots Keras-style training curves: loss and accuracy, train vs validation.

    Epochs are numbered from 1. When ``val_loss`` is present, the epoch with the
    lowest validation loss is marked on both panels. The accuracy metric is
    looked up as ``accuracy``, ``acc`` or ``binary_accuracy`` (first found);
    a panel whose metric is missing says so instead of plotting.

    Args:
        history: Metric name -> per-epoch values, e.g. ``History.history``
            with keys ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
        path: Destination PNG file; parent directories are created.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``history`` holds neither a loss nor an accuracy series.
    """
    acc_key = _accuracy_key(history)
    panels = (("loss", "Loss"), (acc_key, "Accuracy"))
    if all(
        _history_series(history, key) is None and _history_series(history, f"val_{key}") is None
        for key, _ in panels
    ):
        raise ValueError(f"history has no loss or accuracy series; keys present: {sorted(history)}")
    best_epoch = _best_epoch(history)
    fig = new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, panels, strict=True):
        _draw_panel(ax, history, key, label, best_epoch)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)


def _accuracy_key(history: Mapping[str, Sequence[float]]) -> str:
    """The first of ``accuracy``, ``acc``, ``binary_accuracy`` with a series (train or val)."""
    return next(
        (
            k
            for k in ("accuracy", "acc", "binary_accuracy")
            if _history_series(history, k) is not None
            or _history_series(history, f"val_{k}") is not None
        ),
        "accuracy",
    )


def _best_epoch(history: Mapping[str, Sequence[float]]) -> int | None:
    """The epoch (from 1) of the lowest finite validation loss, if there is one."""
    val_loss = _history_series(history, "val_loss")
    if val_loss is None or not np.isfinite(val_loss).any():
        return None
    return int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan))) + 1


def _draw_panel(
    ax: Axes,
    history: Mapping[str, Sequence[float]],
    key: str,
    label: str,
    best_epoch: int | None,
) -> None:
    """One panel: the train and validation series of ``key``, or a note that none was recorded."""
    plotted = False
    for series_key, series_label, style in (
        (key, "train", "-"),
        (f"val_{key}", "validation", "--"),
    ):
        values = _history_series(history, series_key)
        if values is None:
            continue
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, style, marker="o", markersize=3, label=series_label)
        plotted = True
    if not plotted:
        ax.text(
            0.5,
            0.5,
            f"no {label.lower()} recorded",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        if best_epoch is not None:
            ax.axvline(
                best_epoch,
                color="tab:red",
                linestyle=":",
                linewidth=1.2,
                label=f"best val_loss (epoch {best_epoch})",
            )
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("Epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(label)
