"""Training loop shared by the models: binary cross-entropy, an optimizer, best epoch kept."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import pandas as pd

__all__ = [
    "EpochCallback",
    "TrainResult",
    "history_frame",
    "make_optimizer",
    "train",
]

EpochCallback = Callable[[int, Mapping[str, float]], None]


@dataclass
class TrainResult:
    """A trained model (at its best epoch) and what happened on the way."""

    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int  # 0-based: the epoch kept (the last one when training keeps the last)
    best_val_loss: float

    @property
    def best_metrics(self) -> dict[str, float]:
        return {key: values[self.best_epoch] for key, values in self.history.items()}


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    schedule: str = "constant",
    epochs: int = 1,
    steps_per_epoch: int = 1,
    warmup_epochs: int = 0,
    weight_decay: float = 0.0,
) -> keras.optimizers.Optimizer:
    """``rmsprop`` (the book's) or ``adamw``, at a constant rate or on Keras' ``CosineDecay``
    (linear warmup from 1% of the rate over ``warmup_epochs``, then cosine decay to 0)."""
    rate: Any = learning_rate
    if schedule == "cosine":
        total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 100 if warmup else learning_rate,
            decay_steps=total - warmup,
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    elif schedule != "constant":
        raise ValueError(f"unknown schedule {schedule!r}: choose constant or cosine")
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: choose rmsprop or adamw")


def train(
    model: keras.Model,
    train_data: Any,
    validation_data: Any,
    *,
    epochs: int,
    learning_rate: float,
    optimizer: keras.optimizers.Optimizer | None = None,
    batch_size: int | None = None,
    on_epoch_end: EpochCallback | None = None,
    patience: int | None = None,
    monitor: str = "val_loss",
    keep: str = "best",
    verbose: int = 0,
) -> TrainResult:
    """Compile (RMSprop unless ``optimizer`` is given) and train; the returned model holds the
    best epoch by ``monitor`` (lowest ``val_loss``, or highest ``val_accuracy``), or with
    ``keep="last"`` the last epoch trained.

    Keras' ``EarlyStopping(restore_best_weights=True)`` keeps the best epoch's weights and, with
    ``patience``, stops once ``monitor`` has not improved for that many epochs.

    Args:
        model: A model with one sigmoid output.
        train_data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        validation_data: The same, for validation.
        epochs: Epochs to train.
        learning_rate: RMSprop's learning rate.
        optimizer: Another optimizer (see :func:`make_optimizer`); ``learning_rate`` is then
            unused.
        batch_size: Batch size when the data are arrays.
        on_epoch_end: Called as ``on_epoch_end(epoch, logs)`` after each epoch (e.g. to log to
            a tracker); epochs count from 0.
        patience: Stop after this many epochs without a better ``monitor`` (None: never).
        monitor: ``val_loss`` (the book's checkpoint) or ``val_accuracy``.
        keep: ``best`` (the epoch best by ``monitor``) or ``last`` (the last epoch trained: for a
            schedule that decays to 0, where a small validation split chooses an epoch by luck).
        verbose: Keras' own printing (0: none; the callers log each epoch themselves).
    """
    if keep not in ("best", "last"):
        raise ValueError(f"unknown keep {keep!r}: choose best or last")
    model.compile(
        optimizer=optimizer or keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    keep_best = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=patience or epochs, restore_best_weights=keep == "best"
    )
    callbacks: list[keras.callbacks.Callback] = [keep_best]
    if on_epoch_end is not None:
        forward = on_epoch_end  # Keras passes numpy scalars; trackers want floats

        def floats(epoch: int, logs: Mapping[str, Any] | None) -> None:
            forward(epoch, {k: float(v) for k, v in (logs or {}).items()})

        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=floats))
    fit: dict[str, Any] = {"epochs": epochs, "callbacks": callbacks, "verbose": verbose}
    if isinstance(train_data, tuple):
        fit.update(batch_size=batch_size, shuffle=True)
        history = model.fit(*train_data, validation_data=validation_data, **fit)
    else:  # a dataset shuffles itself (see images.make_dataset)
        history = model.fit(train_data, validation_data=validation_data, shuffle=False, **fit)
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    best = keep_best.best_epoch if keep == "best" else len(values["loss"]) - 1
    return TrainResult(model, values, best, values["val_loss"][best])


def history_frame(history: Mapping[str, list[float]]) -> pd.DataFrame:
    """A Keras history as a table with a 1-based ``epoch`` column (for DVC plots)."""
    frame = pd.DataFrame(dict(history))
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    return frame
