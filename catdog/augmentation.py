"""Data augmentation as in-model Keras layers: the book's RandomFlip, RandomRotation, RandomZoom,
and an optional RandomTranslation (off in the book's recipe)."""

from __future__ import annotations

import keras
from keras import layers

__all__ = ["make_augmentation"]


def make_augmentation(
    *,
    flip: str,
    rotation: float,
    zoom: float,
    translation: float = 0.0,
    seed: int | None = None,
    name: str = "augmentation",
) -> keras.Sequential:
    """The book's augmentation, RandomFlip, RandomRotation, RandomZoom, then RandomTranslation
    when ``translation`` > 0; active only in training.

    Args:
        flip: ``horizontal``, ``vertical``, ``horizontal_and_vertical`` or ``none``.
        rotation: Rotation range as a fraction of a full turn (the book: 0.1).
        zoom: Zoom range (the book: 0.2).
        translation: Shift range, as a fraction of height and of width (the book: 0, no layer,
            so the book's models and views stay as they were).
        seed: Seed of the random layers; the same seed gives the same sequence of views.
        name: Name of the Sequential block.
    """
    steps: list[layers.Layer] = []
    seeds = [None] * 4 if seed is None else [seed, seed + 1, seed + 2, seed + 3]
    if flip != "none":
        steps.append(layers.RandomFlip(flip, seed=seeds[0]))
    if rotation > 0:
        steps.append(layers.RandomRotation(rotation, seed=seeds[1]))
    if zoom > 0:
        steps.append(layers.RandomZoom(zoom, seed=seeds[2]))
    if translation > 0:
        steps.append(layers.RandomTranslation(translation, translation, seed=seeds[3]))
    if not steps:  # augmentation switched off: an empty Sequential cannot be built
        steps.append(layers.Identity())
    return keras.Sequential(steps, name=name)
