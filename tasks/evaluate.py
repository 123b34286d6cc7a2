"""Evaluate task: every model on the same test set; metrics JSON, predictions, ROC, figures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from catdog import gradcam, vgg16
from catdog import vocabulary as vocab
from catdog.feature_store import load_features
from catdog.images import make_dataset, read_images
from catdog.intervals import metric_intervals, noise_sentence
from catdog.io import atomic_dir, remove_stale_staging, write_json, write_text
from catdog.manifest import read_manifest, split_rows
from catdog.metrics import calibration_curve, compute_metrics, confusion_matrix, roc_curve
from catdog.models import load_model
from catdog.plots.evaluation import (
    plot_accuracy_intervals,
    plot_calibration,
    plot_confusion_matrix,
    plot_roc_curves,
)
from catdog.plots.grid import plot_image_grid
from catdog.report import (
    BOOK_TEST_ACCURACY,
    compare_pairs,
    comparison_markdown,
    flat_metrics,
    pair_metrics,
)
from catdog.results import StageResult
from catdog.stage_table import MODELS
from tasks.common import TASK_OPTIONS, run_logger

if TYPE_CHECKING:  # type hints only: a stage's code deps are what it runs
    import keras

    from catdog.params import DataParams, EvaluateParams

_NAMES = np.array(["cat", "dog"])


def load_models(root: Path) -> dict[str, keras.Model]:
    """Every model the pipeline trains, by stage name, from ``models/``."""
    return {name: load_model(root / vocab.model_path(name)) for name in MODELS}


def predict_test_set(
    root: Path, size: int, batch: int, models: dict[str, keras.Model] | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The test split and each model's probability of dog for it (images of ``size`` px in
    batches of ``batch``), in manifest order; ``models`` as :func:`load_models` loads them."""
    manifest = read_manifest(root / vocab.MANIFEST)
    test = split_rows(manifest, "test")
    images = make_dataset([str(root / p) for p in test["path"]], size, batch)
    features, _ = load_features(root / vocab.FEATURES_DIR, "test")
    probabilities = {}
    for name, model in (models or load_models(root)).items():
        takes_images = model.input_shape[-1] == 3  # classifier.mode=in_model takes images
        inputs = images if takes_images else np.asarray(features, dtype="float32")
        probabilities[name] = np.asarray(model.predict(inputs, verbose=0)).reshape(-1)
    return test, probabilities


def _plot_worst_mistakes(
    name: str,
    test: pd.DataFrame,
    y_true: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    root: Path,
    size: int,
    figures_dir: Path,
    count: int = 8,
) -> None:
    """The test images a model got most confidently wrong, worst first."""
    wrong = np.flatnonzero((prob >= threshold).astype(int) != y_true)
    worst = wrong[np.argsort(-np.abs(prob[wrong] - y_true[wrong]), kind="stable")][:count]
    path = figures_dir / f"misclassified_{name}.png"
    if len(worst) == 0:
        plot_image_grid(np.zeros((1, 8, 8, 3), "uint8"), path, title=f"{name}: no mistakes")
        return
    images = read_images([str(root / p) for p in test["path"].iloc[worst]], size)
    titles = [f"{_NAMES[y_true[i]]}: p(dog)={prob[i]:.2f}" for i in worst]
    plot_image_grid(
        images,
        path,
        titles=titles,
        ncols=4,
        title=f"{name}: worst mistakes ({len(wrong)} of {len(y_true)} wrong)",
    )


def explained_images(
    y_true: np.ndarray, prob: np.ndarray, threshold: float, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``count`` test images a model got most confidently wrong, worst first,
    and of the ``count // 2`` it got right most confidently, surest first."""
    error = np.abs(prob - y_true)
    wrong = (prob >= threshold).astype(int) != y_true
    worst = np.flatnonzero(wrong)[np.argsort(-error[wrong], kind="stable")][:count]
    surest = np.flatnonzero(~wrong)[np.argsort(error[~wrong], kind="stable")][: count // 2]
    return worst, surest


def _plot_gradcam(
    name: str,
    model: keras.Model,
    conv_base: keras.Model | None,
    paths: list[str],
    y_true: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    size: int,
    count: int,
    pretrained: bool,
    path: Path,
) -> None:
    """Grad-CAM over a model's worst mistakes and surest right answers, as one PNG grid."""
    worst, surest = explained_images(y_true, prob, threshold, count)
    chosen = np.concatenate([worst, surest])
    batches = make_dataset([paths[i] for i in chosen], size, 32).as_numpy_iterator()
    inputs = np.concatenate(list(batches))  # the pixels the model was scored on
    answers, maps = gradcam.heatmaps(model, inputs, conv_base=conv_base)
    layer = gradcam.find_gradcam_layer(model, conv_base=conv_base).name
    at_chance = layer == vgg16.GRADCAM_LAYER and not pretrained
    note = " · VGG16 untrained: at chance" if at_chance else ""
    marks = ["wrong"] * len(worst) + ["right"] * len(surest)
    titles = [
        f"{mark}: {_NAMES[y_true[i]]}, p(dog) {p:.2f}"
        for mark, i, p in zip(marks, chosen, answers, strict=True)
    ]
    gradcam.write_overlay_grid(
        path,
        np.clip(np.round(inputs), 0, 255).astype("uint8"),
        maps,
        titles=titles,
        ncols=4,
        title=f"{name}: where it looked (Grad-CAM on {layer}, {_shape(maps)} map){note}\n"
        f"its {len(worst)} worst mistakes, then its {len(surest)} surest right answers "
        f"of {len(y_true)} test images",
    )


def _shape(maps: np.ndarray) -> str:
    return "×".join(str(side) for side in maps.shape[1:3])


def plot_gradcams(
    models: dict[str, keras.Model],
    probabilities: dict[str, np.ndarray],
    test: pd.DataFrame,
    y_true: np.ndarray,
    evaluate: EvaluateParams,
    size: int,
    root: Path,
    pretrained: bool,
    figures_dir: Path,
) -> None:
    """``gradcam_<model>.png`` per model (none when ``evaluate.gradcam`` is 0); a classifier
    on features is explained through the conv base that made them."""
    if evaluate.gradcam == 0:
        return
    paths = [str(root / p) for p in test["path"]]
    for name, model in models.items():
        conv_base = None
        if model.input_shape[-1] != 3:  # a dense head on features
            conv_base = vgg16.make_conv_base(size, root / vocab.CONV_BASE_WEIGHTS)
        _plot_gradcam(
            name,
            model,
            conv_base,
            paths,
            y_true,
            probabilities[name],
            evaluate.threshold,
            size,
            evaluate.gradcam,
            pretrained,
            figures_dir / f"gradcam_{name}.png",
        )


def _score_one(
    name: str,
    prob: np.ndarray,
    test: pd.DataFrame,
    y_true: np.ndarray,
    evaluate: EvaluateParams,
    size: int,
    root: Path,
    out: dict[str, Path],
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """One model's metrics, and its predictions, ROC, confusion matrix and worst mistakes
    written into the staging folders ``out``; returns (metrics, ROC, calibration curve)."""
    threshold = evaluate.threshold
    y_pred = (prob >= threshold).astype(int)
    pd.DataFrame(
        {
            "path": test["path"],
            "actual": _NAMES[y_true],
            "predicted": _NAMES[y_pred],
            "prob_dog": np.round(prob, 6),
        }
    ).to_csv(out["predictions"] / f"{name}.csv", index=False, lineterminator="\n")
    roc = roc_curve(y_true, prob)
    roc.round(6).to_csv(out["roc"] / f"{name}.csv", index=False, lineterminator="\n")
    plot_confusion_matrix(
        confusion_matrix(y_true, y_pred),
        out["figures"] / f"confusion_{name}.png",
        title=f"{name}: test confusion matrix (n={len(y_true)})",
    )
    _plot_worst_mistakes(name, test, y_true, prob, threshold, root, size, out["figures"])
    metrics = compute_metrics(y_true, prob, threshold)
    metrics |= metric_intervals(
        y_true, prob, threshold, resamples=evaluate.bootstrap, seed=evaluate.seed
    )
    return metrics, roc, calibration_curve(y_true, prob)


def _score_models(
    probabilities: dict[str, np.ndarray],
    test: pd.DataFrame,
    y_true: np.ndarray,
    evaluate: EvaluateParams,
    size: int,
    root: Path,
    explain: Callable[[Path], None],
) -> dict[str, dict[str, float]]:
    """Score every model into the staging folders (``explain`` adds its figures), then swap
    them in; return the metrics."""
    results: dict[str, dict[str, float]] = {}
    rocs, calibrations = {}, {}
    for folder in (vocab.PREDICTIONS_DIR, vocab.ROC_DIR, vocab.EVALUATE_FIGURES):
        remove_stale_staging((root / folder).parent)
    with (
        atomic_dir(root / vocab.PREDICTIONS_DIR) as predictions_dir,
        atomic_dir(root / vocab.ROC_DIR) as roc_dir,
        atomic_dir(root / vocab.EVALUATE_FIGURES) as figures_dir,
    ):
        out = {"predictions": predictions_dir, "roc": roc_dir, "figures": figures_dir}
        for name, prob in probabilities.items():
            results[name], rocs[name], calibrations[name] = _score_one(
                name, prob, test, y_true, evaluate, size, root, out
            )
        aucs = {
            m: (r["roc_auc"], r["roc_auc_ci_low"], r["roc_auc_ci_high"]) for m, r in results.items()
        }
        plot_roc_curves(rocs, figures_dir / "roc.png", title="ROC on the test set", aucs=aucs)
        plot_calibration(calibrations, figures_dir / "calibration.png")
        plot_accuracy_intervals(
            results, figures_dir / "accuracy.png", len(y_true), book=BOOK_TEST_ACCURACY
        )
        explain(figures_dir)
    return results


@task(name="evaluate", **TASK_OPTIONS)
def evaluate(root: Path, data: DataParams, evaluate: EvaluateParams) -> StageResult:
    """Score the three models on the test split and write metrics, tables and plots."""
    logger = run_logger()
    models = load_models(root)
    test, probabilities = predict_test_set(root, data.image_size, evaluate.batch_size, models)
    y_true = (test["label"] == "dog").to_numpy().astype(int)
    images = len(y_true)
    weights = json.loads((root / vocab.FEATURES_META).read_text())["weights"]

    def explain(figures_dir: Path) -> None:
        started = time.perf_counter()
        pretrained, size = bool(weights["pretrained"]), data.image_size
        plot_gradcams(
            models, probabilities, test, y_true, evaluate, size, root, pretrained, figures_dir
        )
        if evaluate.gradcam:
            seconds = time.perf_counter() - started
            logger.info("evaluate: Grad-CAM heatmaps of %d models in %.1f s", len(models), seconds)

    results = _score_models(probabilities, test, y_true, evaluate, data.image_size, root, explain)
    pairs = compare_pairs(probabilities, y_true, evaluate.threshold)
    metrics_doc = {
        **results,
        "test_images": images,
        "weights": weights["label"],
        "pretrained": int(weights["pretrained"]),
        "pairs": pair_metrics(pairs),
    }
    metrics_path = write_json(root / vocab.METRICS, metrics_doc)
    bootstrap = {"resamples": evaluate.bootstrap, "seed": evaluate.seed}
    markdown = comparison_markdown(results, pairs, weights, images, **bootstrap)
    comparison = write_text(root / vocab.COMPARISON, markdown)
    for name, values in results.items():
        logger.info(
            "evaluate: %-10s accuracy %.3f [%.3f, %.3f]  roc_auc %.3f",
            name,
            values["accuracy"],
            values["accuracy_ci_low"],
            values["accuracy_ci_high"],
            values["roc_auc"],
        )
    logger.info("evaluate: %s", noise_sentence(images))
    figures = sorted((root / vocab.EVALUATE_FIGURES).glob("*.png"))
    return StageResult(
        "evaluate",
        [metrics_path, comparison, root / vocab.PREDICTIONS_DIR, root / vocab.ROC_DIR],
        metrics=flat_metrics(results, pairs, images),
        artifacts=[metrics_path, comparison, *figures],
        tags={"weights": weights["label"]},
        warnings=[weights["warning"]] if weights.get("warning") else [],
        summary=f"test accuracy on {images} images: "
        + ", ".join(f"{name} {values['accuracy']:.3f}" for name, values in results.items()),
    )
