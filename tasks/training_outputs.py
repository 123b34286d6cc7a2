"""What the three training tasks write: the best model, its history table and plot."""

from __future__ import annotations

from pathlib import Path

from catdog import vocabulary as vocab
from catdog.io import atomic_file
from catdog.models import save_model
from catdog.plots.history import plot_history
from catdog.results import StageResult
from catdog.training import TrainResult, history_frame
from tasks.common import run_logger


def save_training_outputs(
    name: str, result: TrainResult, root: Path, *, tags: dict[str, str] | None = None
) -> StageResult:
    """Write ``models/<name>.keras``, its history CSV and PNG; return the stage's result."""
    model_path = root / vocab.model_path(name)
    save_model(result.model, model_path)
    history_csv = root / vocab.history_path(name)
    with atomic_file(history_csv) as tmp:
        history_frame(result.history).to_csv(tmp, index=False, lineterminator="\n")
    figure = plot_history(
        result.history, root / vocab.history_figure(name), title=f"{name}: training history"
    )
    best = result.best_metrics
    run_logger().info(
        "%s: kept epoch %d of %d (val_loss %.4f, val_accuracy %.3f)",
        name,
        result.best_epoch + 1,
        len(result.history["loss"]),
        result.best_val_loss,
        best.get("val_accuracy", float("nan")),
    )
    metrics = {f"best_{k}": v for k, v in best.items()}
    metrics["best_epoch"] = float(result.best_epoch + 1)
    return StageResult(
        name,
        [model_path, history_csv, figure],
        metrics=metrics,
        history=result.history,
        artifacts=[history_csv, figure],
        model_path=model_path,
        model=result.model,
        tags=tags or {},
        summary=f"kept epoch {result.best_epoch + 1} of {len(result.history['loss'])}, "
        f"val_accuracy {best.get('val_accuracy', float('nan')):.3f}",
    )
