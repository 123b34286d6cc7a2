"""Seeding: the same seed gives the same numbers in a fresh process or a long-lived one.

Keras draws the seed of every initializer built without one from Python's global ``random``, so
any thread that uses ``random`` meanwhile (Prefect's log and event workers do, for jitter)
changes a model's initial weights. :func:`initialize_weights` redraws them from the stage's seed
alone; :func:`seed_everything` resets Keras' per-process state (layer-name counters, seed
generators), so a stage run after others in one process builds exactly what a fresh process
would.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["initialize_weights", "seed_everything"]

_SUFFIX = "_initializer"


def seed_everything(seed: int) -> None:
    """Start Keras afresh, seed Python, NumPy and TensorFlow, and ask for deterministic kernels."""
    keras.backend.clear_session()  # layer names and seed generators as in a fresh process
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _seeded_variables(layer: keras.layers.Layer) -> list[tuple[keras.Variable, object]]:
    """(variable, random initializer) pairs of one layer, e.g. (kernel, GlorotUniform)."""
    pairs = []
    for attribute, initializer in sorted(vars(layer).items()):
        if not (attribute.endswith(_SUFFIX) and hasattr(initializer, "seed")):
            continue  # constant initializers (zeros, ones) need no seed
        prefix = attribute.removesuffix(_SUFFIX)
        for name in (prefix, f"{prefix}_kernel", "kernel"):  # DepthwiseConv2D: kernel
            variable = getattr(layer, name, None)
            if isinstance(variable, keras.Variable):
                pairs.append((variable, initializer))
                break
    return pairs


def _layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """``model`` and every layer inside it, nested models included, each once, in order."""
    found: dict[int, keras.layers.Layer] = {id(model): model}
    for layer in getattr(model, "layers", []):
        for inner in _layers(layer):
            found.setdefault(id(inner), inner)
    return list(found.values())


def initialize_weights(model: keras.Model, seed: int) -> keras.Model:
    """Redraw every randomly initialised weight of ``model`` from ``seed`` alone.

    Each weight is drawn by its layer's own initializer (same distribution, e.g. Glorot uniform)
    with a seed derived from ``seed`` and the weight's position in the model, so the result
    depends on nothing else: not on Python's global random state nor on what the process built
    before. Returns ``model``.
    """
    variables = [pair for layer in _layers(model) for pair in _seeded_variables(layer)]
    for index, (variable, initializer) in enumerate(variables):
        derived = int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)
        config = {**initializer.get_config(), "seed": derived}  # type: ignore[attr-defined]
        fresh = type(initializer).from_config(config)
        variable.assign(fresh(variable.shape, dtype=variable.dtype))
    return model
