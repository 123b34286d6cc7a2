#!/usr/bin/env python3
"""Book fidelity and speed of catdog's own model builders on a GPU (Keras 3 on PyTorch).

Meant for a GPU machine that has PyTorch but no TensorFlow; the images come pre-packed by
``bench/prepare_gpu_data.py`` (JPEG bytes; decoded with Pillow and resized with a NumPy copy of
``tf.image.resize(method="bilinear")``). Three measurements, each caught on its own, the JSON
rewritten after each (and after every scratch epoch), so a timeout still leaves results:

1. ``throughput``: untrained VGG16 conv base (``make_conv_base`` + ``feature_extractor``),
   ``predict`` over all images at batch 32 and 128, float32 and mixed_bfloat16.
2. ``finetune``: ``make_finetune_model`` (unfreeze 4) trained 2 epochs, lr 1e-5, batch 32.
3. ``scratch``: the book's small convnet with augmentation, ``epochs`` epochs (RMSprop 1e-3,
   batch 32, best val-loss epoch restored), then test accuracy of that epoch.

Usage::

    KERAS_BACKEND=torch python bench/gpu_book.py --data .gpu/photos.npz --out gpu_book.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # catdog
sys.path.insert(0, str(_HERE))  # prepare_gpu_data

import keras  # noqa: E402
import numpy as np  # noqa: E402
from prepare_gpu_data import load_npz  # noqa: E402

from catdog.augmentation import make_augmentation  # noqa: E402
from catdog.convnets import make_scratch_model  # noqa: E402
from catdog.features import feature_extractor  # noqa: E402
from catdog.seeding import seed_everything  # noqa: E402
from catdog.training import train  # noqa: E402
from catdog.vgg16 import make_conv_base, make_dense_head, make_finetune_model  # noqa: E402

IMAGE_SIZE = 180
SEED = 42
AUGMENTATION = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2, "seed": SEED}
STARTED = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - STARTED


def log(message: str) -> None:
    print(f"[{elapsed():7.1f}s] {message}", flush=True)


class Report:
    """The JSON written to ``path`` after every change (atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {}

    def write(self) -> None:
        self.data["elapsed_s"] = round(elapsed(), 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=float) + "\n")
        tmp.replace(self.path)


def environment() -> dict:
    info = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    if info["backend"] == "torch":
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cudnn"] = torch.backends.cudnn.version()
            info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
            info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    elif info["backend"] == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def measure_throughput(x: np.ndarray, batch_sizes: list[int], policies: list[str]) -> dict:
    """Images/s of the VGG16 feature extractor's ``predict``, after one warm-up batch."""
    out: dict = {"images": len(x)}
    for policy in policies:
        entry: dict = {}
        out[policy] = entry
        try:
            keras.mixed_precision.set_global_policy(policy)
            seed_everything(SEED)
            extractor = feature_extractor(make_conv_base(IMAGE_SIZE))
            entry["output_shape"] = list(extractor.output_shape[1:])
            for batch_size in batch_sizes:
                t0 = time.perf_counter()
                extractor.predict(x[:batch_size], batch_size=batch_size, verbose=0)
                warm = time.perf_counter() - t0
                t0 = time.perf_counter()
                features = extractor.predict(x, batch_size=batch_size, verbose=0)
                seconds = time.perf_counter() - t0
                # the pipeline's own loop (features.extract_to_file): predict_on_batch per batch
                t0 = time.perf_counter()
                for start in range(0, len(x), batch_size):
                    np.asarray(extractor.predict_on_batch(x[start : start + batch_size]))
                seconds_pob = time.perf_counter() - t0
                entry[f"batch_{batch_size}"] = {
                    "warmup_s": round(warm, 3),
                    "predict_s": round(seconds, 3),
                    "predict_images_per_s": round(len(x) / seconds, 1),
                    "predict_on_batch_s": round(seconds_pob, 3),
                    "predict_on_batch_images_per_s": round(len(x) / seconds_pob, 1),
                    "features_dtype": str(features.dtype),
                    "features_finite": bool(np.isfinite(features).all()),
                }
                log(f"throughput {policy} batch {batch_size}: {entry[f'batch_{batch_size}']}")
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"
            entry["traceback"] = traceback.format_exc()[-3000:]
            log(f"throughput {policy} FAILED: {entry['error']}")
        finally:
            keras.mixed_precision.set_global_policy("float32")
    return out


class EpochClock:
    """``on_epoch_end`` for ``catdog.training.train``: times epochs, can stop at a deadline."""

    def __init__(self, report: Report, key: str, deadline_s: float | None, reserve_s: float):
        self.report, self.key = report, key
        self.deadline_s, self.reserve_s = deadline_s, reserve_s
        self.model: keras.Model | None = None
        self.last = time.perf_counter()
        self.entry = report.data.setdefault(key, {})
        self.entry.setdefault("epochs", [])

    def start(self, model: keras.Model) -> None:
        self.model = model
        self.last = time.perf_counter()

    def __call__(self, epoch: int, logs: dict) -> None:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        row = {"epoch": epoch + 1, "seconds": round(seconds, 3)}
        row.update({k: round(float(v), 5) for k, v in logs.items()})
        self.entry["epochs"].append(row)
        log(f"{self.key} epoch {epoch + 1}: {row}")
        if (
            self.deadline_s is not None
            and self.model is not None
            and elapsed() + 1.3 * seconds + self.reserve_s > self.deadline_s
        ):
            self.model.stop_training = True
            self.entry["stopped_early_at_deadline"] = epoch + 1
            log(f"{self.key}: stopping after epoch {epoch + 1}, deadline {self.deadline_s} s")
        self.report.write()


def summarise_epochs(rows: list[dict]) -> dict:
    seconds = [r["seconds"] for r in rows]
    if not seconds:
        return {}
    steady = seconds[1:] or seconds
    return {
        "epochs_run": len(seconds),
        "first_epoch_s": seconds[0],
        "median_epoch_s_after_first": round(float(np.median(steady)), 3),
        "mean_epoch_s_after_first": round(float(np.mean(steady)), 3),
        "train_wall_s": round(float(np.sum(seconds)), 2),
    }


def measure_finetune(sets: dict, report: Report, epochs: int) -> None:
    entry = report.data.setdefault("finetune", {})
    try:
        seed_everything(SEED)
        conv_base = make_conv_base(IMAGE_SIZE)
        head = make_dense_head(conv_base.output_shape[1:])
        model = make_finetune_model(
            conv_base,
            head,
            make_augmentation(**AUGMENTATION),
            image_size=IMAGE_SIZE,
            unfreeze=4,
        )
        entry["trainable_weights"] = len(model.trainable_weights)
        clock = EpochClock(report, "finetune", None, 0.0)
        clock.start(model)
        result = train(
            model,
            sets["train"][:2],
            sets["validation"][:2],
            epochs=epochs,
            learning_rate=1e-5,
            batch_size=32,
            on_epoch_end=clock,
            verbose=2,
        )
        entry.update(summarise_epochs(entry["epochs"]))
        if len(entry["epochs"]) >= 2:
            entry["second_epoch_s"] = entry["epochs"][1]["seconds"]
        entry["best_epoch"] = result.best_epoch + 1
        entry["note"] = "untrained VGG16 (no ImageNet weights): times only, accuracy meaningless"
    except Exception as error:
        entry["error"] = f"{type(error).__name__}: {error}"
        entry["traceback"] = traceback.format_exc()[-3000:]
        log(f"finetune FAILED: {entry['error']}")
    report.write()


def measure_scratch(sets: dict, report: Report, epochs: int, deadline_s: float | None) -> None:
    entry = report.data.setdefault("scratch", {})
    entry["epochs_requested"] = epochs
    try:
        seed_everything(SEED)
        model = make_scratch_model(IMAGE_SIZE, make_augmentation(**AUGMENTATION), dropout=0.5)
        clock = EpochClock(report, "scratch", deadline_s, reserve_s=20.0)
        clock.start(model)
        t0 = time.perf_counter()
        result = train(
            model,
            sets["train"][:2],
            sets["validation"][:2],
            epochs=epochs,
            learning_rate=1e-3,
            batch_size=32,
            on_epoch_end=clock,
            verbose=2,
        )
        entry["fit_wall_s"] = round(time.perf_counter() - t0, 2)
        entry.update(summarise_epochs(entry["epochs"]))
        entry["best_epoch"] = result.best_epoch + 1
        entry["best_val_loss"] = round(result.best_val_loss, 5)
        entry["best_epoch_metrics"] = {k: round(v, 5) for k, v in result.best_metrics.items()}
        report.write()
        x_test, y_test = sets["test"][:2]
        t0 = time.perf_counter()
        scores = model.evaluate(x_test, y_test, batch_size=32, verbose=0, return_dict=True)
        entry["test"] = {k: round(float(v), 5) for k, v in scores.items()}
        entry["test"]["images"] = len(x_test)
        entry["evaluate_s"] = round(time.perf_counter() - t0, 3)
        log(f"scratch test (best epoch {entry['best_epoch']}): {entry['test']}")
    except Exception as error:
        entry["error"] = f"{type(error).__name__}: {error}"
        entry["traceback"] = traceback.format_exc()[-3000:]
        log(f"scratch FAILED: {entry['error']}")
    report.write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".gpu/photos.npz"))
    parser.add_argument("--epochs", type=int, default=100, help="scratch model epochs")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    default_out = Path(os.environ.get("OUT", ".")) / "gpu_book.json"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--limit", type=int, default=None, help="images per split (tests)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds from start: stop the scratch training early so its evaluation fits",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["throughput", "finetune", "scratch"]
    )
    args = parser.parse_args(argv)

    report = Report(args.out)
    report.data["environment"] = environment()
    report.data["args"] = {k: str(v) for k, v in vars(args).items()}
    log(f"environment: {report.data['environment']}")
    report.write()

    t0 = time.perf_counter()
    sets = load_npz(args.data, IMAGE_SIZE, args.limit, workers=min(16, os.cpu_count() or 1))
    report.data["data"] = {
        "load_s": round(time.perf_counter() - t0, 2),
        "decode": "Pillow (libjpeg-turbo, ISLOW IDCT) + NumPy copy of tf.image.resize bilinear",
        **{name: {"images": len(y), "dogs": int(y.sum())} for name, (_, y, _) in sets.items()},
    }
    log(f"data: {report.data['data']}")
    report.write()

    if "throughput" not in args.skip:
        everything = np.concatenate([sets[name][0] for name in sets])
        report.data["throughput"] = measure_throughput(
            everything, [32, 128], ["float32", "mixed_bfloat16"]
        )
        del everything
        report.write()
    if "finetune" not in args.skip:
        measure_finetune(sets, report, args.finetune_epochs)
    if "scratch" not in args.skip:
        measure_scratch(sets, report, args.epochs, args.deadline)
    log("done")
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
