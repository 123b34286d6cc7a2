"""Filters task: VGG16 from the inside, as chapter 9 draws it, for the conv base the features
came from: one test photo's activations per layer, and each layer's filters' favourite inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task

from catdog import vocabulary as vocab
from catdog.errors import ParamsError
from catdog.images import read_images
from catdog.inside import activations, filter_patterns, visible
from catdog.io import atomic_dir, remove_stale_staging
from catdog.manifest import read_manifest, split_rows
from catdog.plots.grid import plot_image_rows
from catdog.results import StageResult
from catdog.vgg16 import make_conv_base
from tasks.common import TASK_OPTIONS, progress_logger

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    from catdog.params import DataParams, FiltersParams


def _weights_note(weights: dict) -> str:
    if weights["pretrained"]:
        return f"VGG16 weights: {weights['label']}"
    return "VGG16 untrained (no ImageNet weights here): random filters, not learned ones"


@task(name="filters", **TASK_OPTIONS)
def filters(root: Path, data: DataParams, filters: FiltersParams) -> StageResult:
    """Draw ``activations.png`` and ``patterns.png`` into reports/figures/filters/."""
    test = split_rows(read_manifest(root / vocab.MANIFEST), "test")
    if filters.photo >= len(test):
        raise ParamsError(
            f"params.yaml: filters.photo {filters.photo}: the test split has {len(test)} photos; "
            f"give 0 to {len(test) - 1}"
        )
    weights = json.loads((root / vocab.FEATURES_META).read_text())["weights"]
    note = _weights_note(weights)
    weights_file = root / vocab.CONV_BASE_WEIGHTS
    row = test.iloc[filters.photo]
    photo = read_images([str(root / row["path"])], data.image_size)[0]
    maps = activations(
        make_conv_base(data.image_size, weights_file), photo, filters.layers, filters.channels
    )
    progress = progress_logger("filters: favourite inputs, layers", every=0.2)
    started = time.perf_counter()
    patterns = {}
    if filters.filters:
        conv_base = make_conv_base(filters.pattern_size, weights_file)
        for done, layer in enumerate(filters.layers, start=1):
            progress(done - 1, len(filters.layers))
            patterns[layer] = filter_patterns(
                conv_base,
                layer,
                range(filters.filters),
                steps=filters.steps,
                learning_rate=filters.learning_rate,
                seed=filters.seed,
            )
        progress(len(filters.layers), len(filters.layers))
    seconds = time.perf_counter() - started

    out = root / vocab.FILTERS_FIGURES
    remove_stale_staging(out.parent)
    with atomic_dir(out) as staging:
        rows = [("photo", photo[None])]
        rows += [(f"{layer}\n{m.shape[1]}×{m.shape[2]}", visible(m)) for layer, m in maps.items()]
        captions = [[row["label"]]] + [[f"#{c}" for c in range(len(m))] for m in maps.values()]
        plot_image_rows(
            rows,
            staging / "activations.png",
            title=f"What VGG16's layers make of test photo {filters.photo} ({row['label']}): "
            f"the first {filters.channels} feature maps per layer\n{note}",
            captions=captions,
        )
        if patterns:
            plot_image_rows(
                list(patterns.items()),
                staging / "patterns.png",
                title=f"Inputs that most excite each layer's first {filters.filters} filters\n"
                f"{filters.steps} steps of gradient ascent at {filters.pattern_size} px · {note}",
                captions=[[f"filter {f}" for f in range(filters.filters)] for _ in patterns],
            )
    figures = sorted(out.glob("*.png"))
    return StageResult(
        "filters",
        [out],
        metrics={"pattern_seconds": seconds},
        artifacts=figures,
        tags={"weights": weights["label"]},
        warnings=[] if weights["pretrained"] else [note],
        summary=f"{len(maps)} layers drawn, {len(patterns) * filters.filters} filter patterns",
    )
