"""Training loop shared by the three models: RMSprop, binary cross-entropy, best epoch kept."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import pandas as pd

__all__ = [
    "EpochCallback",
    "KeepBestWeights",
    "TrainResult",
    "history_frame",
    "train",
]

EpochCallback = Callable[[int, Mapping[str, float]], None]


class KeepBestWeights(keras.callbacks.Callback):
    """Remember the weights of the epoch with the lowest ``monitor`` and restore them at the end."""

    def __init__(self, monitor: str = "val_loss") -> None:
        super().__init__()
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self._weights: list[Any] | None = None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best, self.best_epoch = float(value), epoch
            self._weights = self.model.get_weights()

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)


class _ForwardEpochs(keras.callbacks.Callback):
    def __init__(self, callback: EpochCallback) -> None:
        super().__init__()
        self.callback = callback

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.callback(epoch, {k: float(v) for k, v in (logs or {}).items()})


@dataclass
class TrainResult:
    """A trained model (at its best epoch) and what happened on the way."""

    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int  # 0-based
    best_val_loss: float

    @property
    def best_metrics(self) -> dict[str, float]:
        return {key: values[self.best_epoch] for key, values in self.history.items()}


def train(
    model: keras.Model,
    train_data: Any,
    validation_data: Any,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int | None = None,
    on_epoch_end: EpochCallback | None = None,
    verbose: int = 2,
) -> TrainResult:
    """Compile with RMSprop and train; the returned model holds the lowest-val-loss epoch.

    Args:
        model: A model with one sigmoid output.
        train_data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        validation_data: The same, for validation.
        epochs: Epochs to train.
        learning_rate: RMSprop's learning rate.
        batch_size: Batch size when the data are arrays.
        on_epoch_end: Called as ``on_epoch_end(epoch, logs)`` after each epoch (e.g. to log to
            a tracker); epochs count from 0.
        verbose: Keras' verbosity (2: one line per epoch).
    """
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    keep_best = KeepBestWeights()
    callbacks: list[keras.callbacks.Callback] = [keep_best]
    if on_epoch_end is not None:
        callbacks.append(_ForwardEpochs(on_epoch_end))
    if isinstance(train_data, tuple):
        history = model.fit(
            train_data[0],
            train_data[1],
            validation_data=validation_data,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=True,
        )
    else:
        history = model.fit(  # a dataset shuffles itself (see images.make_dataset)
            train_data,
            validation_data=validation_data,
            epochs=epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainResult(model, values, keep_best.best_epoch, keep_best.best)


def history_frame(history: Mapping[str, list[float]]) -> pd.DataFrame:
    """A Keras history as a table with a 1-based ``epoch`` column (for DVC plots)."""
    frame = pd.DataFrame(dict(history))
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    return frame
