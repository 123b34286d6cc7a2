"""A model's training history: loss and accuracy per epoch, training and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from catdog.plots.figure import new_figure, save_png

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
    acc_key = next(
        (
            k
            for k in ("accuracy", "acc", "binary_accuracy")
            if _history_series(history, k) is not None
            or _history_series(history, f"val_{k}") is not None
        ),
        "accuracy",
    )
    panels = (("loss", "Loss"), (acc_key, "Accuracy"))
    if all(
        _history_series(history, key) is None and _history_series(history, f"val_{key}") is None
        for key, _ in panels
    ):
        raise ValueError(f"history has no loss or accuracy series; keys present: {sorted(history)}")

    best_epoch: int | None = None
    val_loss = _history_series(history, "val_loss")
    if val_loss is not None and np.isfinite(val_loss).any():
        best_epoch = int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan))) + 1

    fig = new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, panels, strict=True):
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
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)
