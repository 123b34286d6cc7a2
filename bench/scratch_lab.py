"""Research runner: a from-scratch convnet that reaches >= 90% test in <= 1,800 s.

Needs only a manifest CSV (columns ``path``, ``label``, ``split``; paths relative to the
manifest's folder), TensorFlow/Keras and NumPy. The main commands:

``train``  one training run; writes one CSV row per epoch (epoch, wall seconds excluding pauses,
           loss, accuracy, val_loss, val_accuracy, lr) and a JSON summary (timings, loads, best
           epoch, validation accuracy with and without flip averaging; test only with --test).
``speed``  interleaved A/B timing of training steps for several variants in one process (same
           conditions), e.g. image size, precision, architecture, augmentation, input pipeline.
``manifest`` a manifest from a project's split (train, validation) with a held-out folder
           such as ``select/`` as its test rows.
``compare`` runs trained with ``--test`` against a base run on the same held-out photos: each
           accuracy with its interval, each gain with its paired interval and McNemar's p.

Machine sharing: before a run and at every epoch end it waits while ``/tmp/catdog-cpu-quiet``
exists (polling every 10 s); time spent waiting is excluded from the wall times, and
``os.getloadavg()`` is recorded at start and end.

Examples::

    python bench/scratch_lab.py train --arch book --size 180 --epochs 100 --out runs/book
    python bench/scratch_lab.py train --arch xception --size 128 --precision mixed_bfloat16 \\
        --optimizer adamw --lr 2e-3 --schedule cosine --warmup 3 --epochs 60 --out runs/x128
    python bench/scratch_lab.py speed --variant arch=book,size=180 \\
        --variant arch=xception,size=128,precision=mixed_bfloat16
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QUIET_FILE = Path("/tmp/catdog-cpu-quiet")
LABEL_INDEX = {"cat": 0, "dog": 1}
ARCHS = ("book", "xception", "resnet", "vgg")


# --------------------------------------------------------------------------- machine sharing
class Pauses:
    """Waits while the quiet file exists; counts the seconds spent waiting."""

    def __init__(self, path: Path = QUIET_FILE, poll: float = 10.0) -> None:
        self.path, self.poll, self.total = path, poll, 0.0

    def wait(self) -> float:
        start = time.perf_counter()
        announced = False
        while self.path.exists():
            if not announced:
                print(f"[pause] {self.path} exists; waiting", flush=True)
                announced = True
            time.sleep(self.poll)
        waited = time.perf_counter() - start if announced else 0.0
        self.total += waited
        return waited


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (less sensitive to other processes than wall)."""
    t = os.times()
    return t.user + t.system


class Clock:
    """Wall seconds since start, excluding pauses."""

    def __init__(self, pauses: Pauses) -> None:
        self.pauses = pauses
        self.start = time.perf_counter()
        self.paused0 = pauses.total

    def __call__(self) -> float:
        return time.perf_counter() - self.start - (self.pauses.total - self.paused0)


# --------------------------------------------------------------------------- data
def read_manifest(manifest: Path, split: str) -> tuple[list[str], np.ndarray]:
    root = manifest.parent
    paths, labels = [], []
    with manifest.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] == split:
                paths.append(str(root / row["path"]))
                labels.append(LABEL_INDEX[row["label"]])
    return paths, np.asarray(labels, dtype="float32")


def jpeg_dataset(paths, labels, size, batch, shuffle_seed=None):
    """The pipeline's input path: decode every JPEG, bilinear resize, float32 [0, 255]."""
    import tensorflow as tf

    def load(path, target):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.image.resize(image, (size, size), method="bilinear"), target

    items = tf.data.Dataset.from_tensor_slices((list(paths), labels))
    if shuffle_seed is not None:
        items = items.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    items = items.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return items.batch(batch).prefetch(tf.data.AUTOTUNE)


def decode_once(paths, size) -> np.ndarray:
    """All images decoded and resized once (the pipeline's resize), rounded to uint8."""
    batches = [np.asarray(x) for x, _ in jpeg_dataset(paths, np.zeros(len(paths)), size, 64)]
    return np.clip(np.round(np.concatenate(batches)), 0, 255).astype("uint8")


def memory_dataset(images: np.ndarray, labels, batch, shuffle_seed=None):
    """Batches from an in-memory uint8 array, cast to float32 [0, 255]."""
    import tensorflow as tf

    items = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        items = items.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    items = items.batch(batch).map(lambda x, y: (tf.cast(x, "float32"), y))
    return items.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- models
def make_augmentation_layers(spec: str, seed: int) -> list:
    """Augmentation from a spec such as ``flip,rot=0.1,zoom=0.2``; ``none`` for none.

    Keys: flip, rot=F, zoom=F, trans=F, contrast=F, bright=F, shear=F, erase=F, crop=N
    (RandomCrop to N px; the model then works at N px and at inference resizes to N).
    All run in float32 whatever the global policy, and only in training.
    """
    from keras import layers

    steps = []
    if spec in ("", "none"):
        return steps
    for i, item in enumerate(spec.split(",")):
        key, _, value = item.partition("=")
        s = seed + i
        kw: dict[str, Any] = {"seed": s, "dtype": "float32"}
        if key == "flip":
            steps.append(layers.RandomFlip("horizontal", **kw))
        elif key == "rot":
            steps.append(layers.RandomRotation(float(value), **kw))
        elif key == "zoom":
            steps.append(layers.RandomZoom(float(value), **kw))
        elif key == "trans":
            steps.append(layers.RandomTranslation(float(value), float(value), **kw))
        elif key == "contrast":
            steps.append(layers.RandomContrast(float(value), **kw))
        elif key == "bright":
            steps.append(layers.RandomBrightness(float(value), value_range=(0, 255), **kw))
        elif key == "shear":
            steps.append(layers.RandomShear(float(value), float(value), **kw))
        elif key == "erase":
            steps.append(
                layers.RandomErasing(
                    factor=1.0, scale=(0.02, float(value)), value_range=(0, 255), **kw
                )
            )
        elif key == "crop":
            steps.append(layers.RandomCrop(int(value), int(value), **kw))
        else:
            raise ValueError(f"unknown augmentation {item!r}")
    return steps


def make_book_model(image_size: int, aug: list, *, dropout: float = 0.5, **_):
    """The book's chapter-8 convnet (listing 8.14), as catdog.models.make_scratch_model."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for layer in aug:
        x = layer(x)
    x = layers.Rescaling(1.0 / 255)(x)
    for filters in (32, 64, 128, 256):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(256, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="book")


def make_xception_model(
    image_size: int,
    aug: list,
    *,
    dropout: float = 0.5,
    widths=(32, 64, 128, 256, 512),
    stem: int = 32,
    stem_stride: int = 1,
    **_,
):
    """The book's chapter-9 mini-Xception (residual, batch norm, separable convolutions)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for layer in aug:
        x = layer(x)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(stem, 5, strides=stem_stride, use_bias=False)(x)
    for width in widths:
        residual = x
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="xception")


def make_resnet_model(
    image_size: int,
    aug: list,
    *,
    dropout: float = 0.5,
    widths=(32, 64, 128, 256),
    stem: int = 32,
    stem_stride: int = 2,
    blocks: int = 1,
    **_,
):
    """A small pre-activation ResNet with ordinary 3x3 convolutions.

    Stem: 3x3 conv (stride ``stem_stride``); then per width ``blocks`` residual blocks (the
    first of each stage after the first downsamples by 2 with a 1x1 projection); global average
    pooling, dropout, sigmoid.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for layer in aug:
        x = layer(x)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(stem, 3, strides=stem_stride, padding="same", use_bias=False)(x)
    for stage, width in enumerate(widths):
        for block in range(blocks):
            stride = 2 if (stage > 0 and block == 0) else 1
            y = layers.BatchNormalization()(x)
            y = layers.Activation("relu")(y)
            if stride != 1 or x.shape[-1] != width:
                residual = layers.Conv2D(width, 1, strides=stride, use_bias=False)(y)
            else:
                residual = x
            y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization()(y)
            y = layers.Activation("relu")(y)
            y = layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            x = layers.add([y, residual])
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet")


def make_vgg_model(
    image_size: int,
    aug: list,
    *,
    dropout: float = 0.5,
    widths=(32, 64, 128, 256),
    stem: int = 0,
    stem_stride: int = 1,
    blocks: int = 2,
    **_,
):
    """A VGG-style convnet with batch norm: per width ``blocks`` 3x3 conv-BN-ReLU, max pool."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for layer in aug:
        x = layer(x)
    x = layers.Rescaling(1.0 / 255)(x)
    if stem:
        x = layers.Conv2D(stem, 3, strides=stem_stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    for width in widths:
        for _ in range(blocks):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="vgg")


BUILDERS = {
    "book": make_book_model,
    "xception": make_xception_model,
    "resnet": make_resnet_model,
    "vgg": make_vgg_model,
}


def build_model(cfg: dict):
    import keras

    keras.mixed_precision.set_global_policy(cfg["precision"])
    aug = make_augmentation_layers(cfg["aug"], cfg["seed"])
    kwargs: dict[str, Any] = {"dropout": cfg["dropout"]}
    if cfg.get("widths"):
        kwargs["widths"] = tuple(int(w) for w in str(cfg["widths"]).split("-"))
    for key in ("stem", "stem_stride", "blocks"):
        if cfg.get(key) is not None:
            kwargs[key] = int(cfg[key])
    model = BUILDERS[cfg["arch"]](int(cfg["size"]), aug, **kwargs)
    keras.mixed_precision.set_global_policy("float32")
    return model


def make_optimizer(cfg: dict, steps_per_epoch: int):
    import keras

    lr = float(cfg["lr"])
    total = int(cfg["epochs"]) * steps_per_epoch
    warmup = int(float(cfg["warmup"]) * steps_per_epoch)
    if cfg["schedule"] == "constant":
        schedule: Any = lr
    elif cfg["schedule"] == "cosine":
        if warmup:
            schedule = keras.optimizers.schedules.CosineDecay(
                lr * 0.01,
                total - warmup,
                alpha=float(cfg["lr_floor"]),
                warmup_target=lr,
                warmup_steps=warmup,
            )
        else:
            schedule = keras.optimizers.schedules.CosineDecay(
                lr, total, alpha=float(cfg["lr_floor"])
            )
    else:
        raise ValueError(cfg["schedule"])
    name = cfg["optimizer"]
    ema = float(cfg.get("ema") or 0.0)
    common: dict[str, Any] = {"use_ema": True, "ema_momentum": ema} if ema else {}
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=schedule, **common)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, **common)
    if name == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=float(cfg["wd"]), **common
        )
    if name == "sgd":
        return keras.optimizers.SGD(
            **common,
            learning_rate=schedule,
            momentum=0.9,
            nesterov=True,
            weight_decay=float(cfg["wd"]) or None,
        )
    raise ValueError(name)


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(np.asarray(lr))


def predict_tta(model, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """P(dog) for the images, and the mean of that and of their horizontal mirrors."""
    plain = model.predict(images.astype("float32"), batch_size=batch, verbose=0).ravel()
    mirror = model.predict(
        images[:, :, ::-1].astype("float32"), batch_size=batch, verbose=0
    ).ravel()
    return plain, (plain + mirror) / 2


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p > 0.5) == (y > 0.5)))


# --------------------------------------------------------------------------- train
DEFAULTS = dict(
    arch="book",
    size=180,
    precision="float32",
    optimizer="rmsprop",
    lr=1e-3,
    schedule="constant",
    warmup=0.0,
    lr_floor=0.0,
    wd=0.004,
    epochs=100,
    batch=32,
    aug="flip,rot=0.1,zoom=0.2",
    dropout=0.5,
    widths=None,
    stem=None,
    stem_stride=None,
    blocks=None,
    input="memory",
    seed=42,
    label_smoothing=0.0,
    ema=0.0,
)


def train(args: argparse.Namespace) -> dict:
    pauses = Pauses()
    pauses.wait()
    load_start = os.getloadavg()
    clock = Clock(pauses)

    import keras
    import tensorflow as tf

    cfg = {k: getattr(args, k) for k in DEFAULTS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg["seed"])
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()

    manifest = Path(args.manifest)
    size = int(cfg["size"])
    tr_paths, y_tr = read_manifest(manifest, "train")
    va_paths, y_va = read_manifest(manifest, "validation")
    if args.limit:  # a random subset (the manifest is sorted by class)
        keep = np.sort(np.random.default_rng(0).permutation(len(tr_paths))[: args.limit])
        tr_paths, y_tr = [tr_paths[i] for i in keep], y_tr[keep]
    t_read = clock()
    x_va = decode_once(va_paths, size)
    if cfg["input"] == "memory":
        x_tr = decode_once(tr_paths, size)
        train_ds = memory_dataset(x_tr, y_tr, cfg["batch"], shuffle_seed=cfg["seed"])
    else:
        train_ds = jpeg_dataset(tr_paths, y_tr, size, cfg["batch"], shuffle_seed=cfg["seed"])
    val_ds = (
        memory_dataset(x_va, y_va, 64)
        if cfg["input"] == "memory"
        else jpeg_dataset(va_paths, y_va, size, 64)
    )
    read_s = clock() - t_read

    model = build_model(cfg)
    steps = math.ceil(len(tr_paths) / cfg["batch"])
    optimizer = make_optimizer(cfg, steps)
    loss = keras.losses.BinaryCrossentropy(label_smoothing=float(cfg["label_smoothing"]))
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    rows: list[dict] = []
    best = {"value": math.inf if args.monitor == "val_loss" else -math.inf, "epoch": -1}
    state = {"weights": None, "stop_reason": "epochs"}
    sign = 1 if args.monitor == "val_loss" else -1
    csv_path = out / "epochs.csv"
    fields = [
        "epoch",
        "wall_s",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "cpu_s",
        "load1",
    ]
    handle = csv_path.open("w", newline="")
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()

    class Monitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {
                "epoch": epoch + 1,
                "wall_s": round(clock(), 2),
                **{k: round(float(logs[k]), 5) for k in fields[2:6]},
                "lr": current_lr(self.model.optimizer),
                "cpu_s": round(cpu_seconds(), 1),
                "load1": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            writer.writerow(row)
            handle.flush()
            value = float(logs[args.monitor])
            if sign * value < sign * best["value"]:
                best.update(value=value, epoch=epoch)
                if args.select == "best":
                    state["weights"] = self.model.get_weights()
            print(
                f"ep {epoch + 1:3d} {row['wall_s']:7.1f}s loss {row['loss']:.4f} "
                f"acc {row['accuracy']:.4f} val_loss {row['val_loss']:.4f} "
                f"val_acc {row['val_accuracy']:.4f} lr {row['lr']:.2e}",
                flush=True,
            )
            if args.patience and epoch - best["epoch"] >= args.patience:
                state["stop_reason"] = f"patience {args.patience}"
                self.model.stop_training = True
            if args.budget and clock() > args.budget:
                state["stop_reason"] = f"budget {args.budget} s"
                self.model.stop_training = True
            pauses.wait()

    t_fit = clock()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg["epochs"],
        # SwapEMAWeights first: validation and the weights Monitor keeps are the EMA weights.
        callbacks=([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg["ema"] else [])
        + [Monitor()],
        verbose=0,
    )
    fit_s = clock() - t_fit
    handle.close()
    if state["weights"] is not None:
        model.set_weights(state["weights"])
    p_va, p_va_tta = predict_tta(model, x_va)
    saved = None
    if args.save:
        saved = out / "model.keras"
        model.save(saved)
    wall_s = clock()
    load_end = os.getloadavg()

    summary: dict[str, Any] = {
        "config": cfg,
        "monitor": args.monitor,
        "patience": args.patience,
        "budget": args.budget,
        "deterministic": args.deterministic,
        "stop_reason": state["stop_reason"],
        "epochs_run": len(rows),
        "best_epoch": best["epoch"] + 1,
        "select": args.select,
        "selected_epoch": best["epoch"] + 1 if args.select == "best" else len(rows),
        "best_row": rows[best["epoch"]] if rows else None,
        "val_accuracy": accuracy(p_va, y_va),
        "val_accuracy_tta": accuracy(p_va_tta, y_va),
        "wall_s": round(wall_s, 1),
        "read_s": round(read_s, 1),
        "fit_s": round(fit_s, 1),
        "s_per_epoch": round(fit_s / max(len(rows), 1), 2),
        "paused_s": round(pauses.total, 1),
        "load_start": load_start,
        "load_end": load_end,
        "params": int(model.count_params()),
        "saved": str(saved) if saved else None,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "tf": tf.__version__,
        "keras": keras.__version__,
    }
    if args.test:
        te_paths, y_te = read_manifest(manifest, "test")
        x_te = decode_once(te_paths, size)
        p_te, p_te_tta = predict_tta(model, x_te)
        summary["test_accuracy"] = accuracy(p_te, y_te)
        summary["test_accuracy_tta"] = accuracy(p_te_tta, y_te)
        np.save(out / "test_pred.npy", np.stack([p_te, p_te_tta]))
    np.save(out / "val_pred.npy", np.stack([p_va, p_va_tta]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "best_epoch",
                    "selected_epoch",
                    "epochs_run",
                    "val_accuracy",
                    "val_accuracy_tta",
                    "wall_s",
                    "s_per_epoch",
                    "read_s",
                    "paused_s",
                    "load_start",
                    "load_end",
                )
            }
            | (
                {
                    "test_accuracy": summary["test_accuracy"],
                    "test_accuracy_tta": summary["test_accuracy_tta"],
                }
                if args.test
                else {}
            )
        ),
        flush=True,
    )
    return summary


# --------------------------------------------------------------------------- speed
def parse_variant(text: str) -> dict:
    cfg = dict(DEFAULTS)
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in cfg:
            raise ValueError(f"unknown key {key!r} in variant {text!r}")
        cfg[key] = type(DEFAULTS[key])(value) if DEFAULTS[key] is not None else value
    return cfg


def speed(args: argparse.Namespace) -> dict:
    """Time training steps of each variant, interleaved round-robin in one process."""
    import keras

    pauses = Pauses()
    pauses.wait()
    load_start = os.getloadavg()
    keras.utils.set_random_seed(0)
    variants = [parse_variant(v.replace(";", ",")) for v in args.variant]
    # ``aug`` can't hold commas inside a comma list: spell it with '+' (flip+rot=0.1).
    for cfg in variants:
        cfg["aug"] = cfg["aug"].replace("+", ",")
    manifest = Path(args.manifest)
    tr_paths, y_tr = read_manifest(manifest, "train")
    n = args.images
    keep = np.sort(np.random.default_rng(0).permutation(len(tr_paths))[:n])
    tr_paths, y_tr = [tr_paths[i] for i in keep], y_tr[keep]
    cache: dict[int, np.ndarray] = {}
    runners = []
    for cfg in variants:
        size = int(cfg["size"])
        if size not in cache:
            cache[size] = decode_once(tr_paths, size)
        model = build_model(cfg)
        model.compile(
            optimizer=make_optimizer(cfg, 63), loss="binary_crossentropy", metrics=["accuracy"]
        )
        if cfg["input"] == "memory":
            ds = memory_dataset(cache[size], y_tr, cfg["batch"], shuffle_seed=1)
        else:
            ds = jpeg_dataset(tr_paths, y_tr, size, cfg["batch"], shuffle_seed=1)
        model.fit(ds.take(2), epochs=1, verbose=0)  # trace and warm up
        runners.append((cfg, model, ds))
    times: list[list[float]] = [[] for _ in runners]
    cpus: list[list[float]] = [[] for _ in runners]
    for _ in range(args.rounds):
        for i, (_cfg, model, ds) in enumerate(runners):
            pauses.wait()
            start, cpu0 = time.perf_counter(), cpu_seconds()
            model.fit(ds, epochs=1, verbose=0)
            times[i].append((time.perf_counter() - start) / n)
            cpus[i].append((cpu_seconds() - cpu0) / n)
    results = []
    for (cfg, model, _), t, c in zip(runners, times, cpus, strict=True):
        label = ",".join(f"{k}={v}" for k, v in cfg.items() if v != DEFAULTS[k])
        results.append(
            {
                "variant": label or "book defaults",
                "params": int(model.count_params()),
                "min_wall_s_per_2000": round(min(t) * 2000, 1),
                "median_wall_s_per_2000": round(float(np.median(t)) * 2000, 1),
                "median_cpu_s_per_2000": round(float(np.median(c)) * 2000, 1),
                "wall_ms_per_image": [round(x * 1000, 2) for x in t],
                "cpu_ms_per_image": [round(x * 1000, 2) for x in c],
            }
        )
        r = results[-1]
        print(
            f"wall min {r['min_wall_s_per_2000']:6.1f} med {r['median_wall_s_per_2000']:6.1f}"
            f"  cpu med {r['median_cpu_s_per_2000']:6.1f} s/2000 img  "
            f"{r['params']:>9,d} params  {r['variant']}",
            flush=True,
        )
    report = {
        "images_per_round": n,
        "rounds": args.rounds,
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "results": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


# --------------------------------------------------------------------------- manifest
def project_on_path() -> None:
    """Make this repository's ``catdog`` importable (only the commands that read the pipeline's
    files or its intervals need it; ``train`` and ``speed`` stay standalone)."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)


def held_out_manifest(args: argparse.Namespace) -> None:
    """A manifest for ``train``: the pipeline's train and validation rows (a project's
    ``data/split/manifest.csv``) and every photo of a held-out folder as the test rows, so
    ``train --test`` scores on photos no choice was made with (``select/``: to choose with).
    ``--fit-validation`` adds the validation rows to the training rows too (retraining on train +
    validation; the epoch is then not chosen on them: ``--select last``)."""
    project_on_path()
    from catdog.manifest import read_manifest as read_split
    from catdog.sources import label_for
    from catdog.vocabulary import MANIFEST

    project, out = Path(args.project).resolve(), Path(args.manifest).resolve()
    rows = []
    for row in read_split(project / MANIFEST).itertuples():
        if row.split == "test":
            continue
        path = os.path.relpath(project / row.path, out.parent)
        if row.split == "validation" and args.fit_validation:
            rows.append((path, row.label, "train"))
        rows.append((path, row.label, row.split))
    held_out = Path(args.held_out).resolve()
    for photo in sorted(held_out.iterdir()):
        label = label_for(photo.relative_to(held_out))
        if label is not None:
            rows.append((os.path.relpath(photo, out.parent), label, "test"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "split"))
        writer.writerows(rows)
    counts = {split: sum(r[2] == split for r in rows) for split in ("train", "validation", "test")}
    print(f"wrote {out}: {counts}")


# --------------------------------------------------------------------------- plot
def plot(args: argparse.Namespace) -> None:
    """Validation accuracy against wall seconds (pauses excluded) for runs' epochs.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for spec in args.run:
        label, _, folder = spec.partition("=")
        with (Path(folder) / "epochs.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        wall = [float(r["wall_s"]) for r in rows]
        acc = [100 * float(r["val_accuracy"]) for r in rows]
        ax.plot(wall, acc, marker=".", markersize=3, linewidth=1, label=label)
    if args.budget:
        ax.axvline(args.budget, color="grey", linestyle="--", linewidth=1)
        ax.text(args.budget, 52, f" {args.budget:.0f} s budget", color="grey")
    ax.axhline(90, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("wall seconds since the run started (pauses excluded)")
    ax.set_ylabel("validation accuracy, % (200 photos)")
    ax.set_ylim(45, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(args.title)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


# --------------------------------------------------------------------------- table
def table(args: argparse.Namespace) -> None:
    """A Markdown table of runs: validation accuracy at the val-loss-best, the last and the
    best epochs, the mean of the last five, wall and CPU seconds per epoch, loads."""
    print(
        "| run | epochs | val acc @best val loss (epoch) | last | mean last 5 | max (epoch) "
        "| TTA @best | wall s/epoch | CPU s/epoch | wall s | load start/end |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in map(Path, args.runs):
        if not (folder / "epochs.csv").exists():
            continue
        with (folder / "epochs.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        summary = (
            json.loads((folder / "summary.json").read_text())
            if (folder / "summary.json").exists()
            else {}
        )
        acc = [100 * float(r["val_accuracy"]) for r in rows]
        loss = [float(r["val_loss"]) for r in rows]
        wall = [float(r["wall_s"]) for r in rows]
        cpu = [float(r.get("cpu_s") or "nan") for r in rows]
        best = int(np.argmin(loss))
        top = int(np.argmax(acc))
        n = max(len(rows) - 2, 1)  # per-epoch cost from epoch 2 on (epoch 1 traces)
        tta = summary.get("val_accuracy_tta")
        loads = f"{summary['load_start'][0]:.1f}/{summary['load_end'][0]:.1f}" if summary else ""
        print(
            f"| {folder.name} | {len(rows)} | {acc[best]:.1f} ({best + 1}) | {acc[-1]:.1f} "
            f"| {np.mean(acc[-5:]):.1f} | {acc[top]:.1f} ({top + 1}) "
            f"| {'' if tta is None else f'{100 * tta:.1f}'} "
            f"| {(wall[-1] - wall[1]) / n:.1f} | {(cpu[-1] - cpu[1]) / n:.1f} "
            f"| {summary.get('wall_s', wall[-1]):.0f} | {loads} |"
        )


def compare(args: argparse.Namespace) -> None:
    """Held-out accuracy of runs trained with ``--test`` against a base run, on the same photos:
    each with its 95% Wilson interval, and the paired difference from the base with Newcombe's
    interval and McNemar's exact p-value (``catdog.intervals``), so a gain that is noise says so.
    Writes the rows as CSV to ``--out`` when given."""
    project_on_path()
    from catdog.intervals import paired_comparison, wilson_interval

    _, labels = read_manifest(Path(args.manifest), "test")
    truth = labels > 0.5

    def right(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        plain, mirrored = np.load(folder / "test_pred.npy")
        return (plain > 0.5) == truth, (mirrored > 0.5) == truth

    base = Path(args.base)
    base_right, _ = right(base)
    rows = []
    for folder in map(Path, [args.base, *args.runs]):
        plain, mirrored = right(folder)
        summary = json.loads((folder / "summary.json").read_text())
        with (folder / "epochs.csv").open(newline="") as handle:
            epochs = list(csv.DictReader(handle))
        cpu = [float(r["cpu_s"]) for r in epochs]
        row: dict[str, Any] = {
            "run": folder.name,
            "epochs": len(epochs),
            "selected_epoch": summary["selected_epoch"],
            "wall_s": summary["wall_s"],
            "cpu_s_per_epoch": round((cpu[-1] - cpu[1]) / max(len(cpu) - 2, 1), 1),
            "val_accuracy": summary["val_accuracy"],
        }
        for name, hits in (("held_out", plain), ("held_out_flip", mirrored)):
            low, high = wilson_interval(int(hits.sum()), len(hits))
            row |= {name: hits.mean(), f"{name}_low": low, f"{name}_high": high}
        pair = paired_comparison(folder.name, plain, base.name, base_right)
        row |= {
            "photos": pair.images,
            "gain": pair.difference,
            "gain_low": pair.ci_low,
            "gain_high": pair.ci_high,
            "mcnemar_p": pair.p_value,
            "verdict": "base" if folder == base else pair.verdict(),
        }
        rows.append(row)
    print(
        f"| run | epochs (kept) | CPU s/epoch | held-out % [95%] | with flip % | "
        f"gain vs {base.name}, points [95%] | verdict |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        gain = (
            "—"
            if r["verdict"] == "base"
            else f"{100 * r['gain']:+.1f} [{100 * r['gain_low']:+.1f}, {100 * r['gain_high']:+.1f}]"
        )
        print(
            f"| {r['run']} | {r['epochs']} ({r['selected_epoch']}) | {r['cpu_s_per_epoch']} "
            f"| {100 * r['held_out']:.1f} [{100 * r['held_out_low']:.1f}, "
            f"{100 * r['held_out_high']:.1f}] | {100 * r['held_out_flip']:.1f} | {gain} "
            f"| {r['verdict']} |"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with Path(args.out).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")
    if args.plot:
        plot_held_out(rows, Path(args.plot), args.title)


def plot_held_out(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Each run's held-out accuracy with its 95% interval, the base's interval shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.6), dpi=110)
    base = rows[0]
    ax.axvspan(100 * base["held_out_low"], 100 * base["held_out_high"], color="grey", alpha=0.15)
    ax.axvline(90, color="grey", linestyle=":", linewidth=1)
    ax.text(90, -0.55, " 90%", color="grey", fontsize=8, va="center")
    for y, r in enumerate(rows):
        acc, low, high = (100 * r[k] for k in ("held_out", "held_out_low", "held_out_high"))
        ax.errorbar(acc, y, xerr=[[acc - low], [high - acc]], fmt="o", color="C0", capsize=3)
        ax.annotate(
            f"{acc:.1f}% [{low:.1f}, {high:.1f}]",
            (high, y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(rows)), [r["run"] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.8)  # the first run on top, room for the 90% label
    ax.set_xlim(75, 95)
    ax.set_xlabel(f"accuracy on {rows[0]['photos']:,} held-out photos, % (95% interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def earlystop(args: argparse.Namespace) -> None:
    """Replay EarlyStopping(monitor, patience, restore_best_weights=True) on recorded curves:
    where it would have stopped, which epoch it would have restored, and at what cost."""
    print(
        "| run | monitor | patience | stops after epoch | restores epoch | val acc restored "
        "| wall s at stop | full run: last-epoch val acc, wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for folder in map(Path, args.runs):
        with (folder / "epochs.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        for monitor in args.monitor:
            sign = 1 if monitor == "val_loss" else -1
            values = [sign * float(r[monitor]) for r in rows]
            for patience in args.patience:
                best, stop = 0, len(rows) - 1
                for epoch, value in enumerate(values):
                    if value < values[best]:
                        best = epoch
                    if epoch - best >= patience:
                        stop = epoch
                        break
                print(
                    f"| {folder.name} | {monitor} | {patience} | {stop + 1} | {best + 1} "
                    f"| {100 * float(rows[best]['val_accuracy']):.1f} "
                    f"| {float(rows[stop]['wall_s']):.0f} "
                    f"| {100 * float(rows[-1]['val_accuracy']):.1f}, "
                    f"{float(rows[-1]['wall_s']):.0f} |"
                )


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", default="/work/scratch-lab/manifest.csv")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="one training run")
    t.add_argument("--out", required=True, help="folder for epochs.csv, summary.json, model")
    t.add_argument("--arch", choices=ARCHS, default=DEFAULTS["arch"])
    t.add_argument("--size", type=int, default=DEFAULTS["size"], help="image side in pixels")
    t.add_argument(
        "--precision", choices=("float32", "mixed_bfloat16"), default=DEFAULTS["precision"]
    )
    t.add_argument(
        "--optimizer", choices=("rmsprop", "adam", "adamw", "sgd"), default=DEFAULTS["optimizer"]
    )
    t.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="(peak) learning rate")
    t.add_argument("--schedule", choices=("constant", "cosine"), default=DEFAULTS["schedule"])
    t.add_argument("--warmup", type=float, default=0.0, help="linear warmup epochs (cosine)")
    t.add_argument(
        "--lr-floor",
        dest="lr_floor",
        type=float,
        default=0.0,
        help="cosine's final lr as a fraction of the peak",
    )
    t.add_argument("--wd", type=float, default=DEFAULTS["wd"], help="AdamW weight decay")
    t.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    t.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    t.add_argument(
        "--aug",
        default=DEFAULTS["aug"],
        help="augmentation spec, e.g. flip,rot=0.1,zoom=0.2 or flip,trans=0.1",
    )
    t.add_argument("--dropout", type=float, default=DEFAULTS["dropout"])
    t.add_argument("--widths", default=None, help="stage widths, e.g. 32-64-128-256")
    t.add_argument("--stem", type=int, default=None, help="stem filters")
    t.add_argument("--stem-stride", dest="stem_stride", type=int, default=None)
    t.add_argument("--blocks", type=int, default=None, help="blocks per stage")
    t.add_argument("--label-smoothing", dest="label_smoothing", type=float, default=0.0)
    t.add_argument(
        "--input",
        choices=("memory", "jpeg"),
        default=DEFAULTS["input"],
        help="memory: decode once into uint8; jpeg: decode every epoch",
    )
    t.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    t.add_argument(
        "--deterministic",
        action="store_true",
        help="tf.config.experimental.enable_op_determinism()",
    )
    t.add_argument(
        "--monitor",
        choices=("val_loss", "val_accuracy"),
        default="val_loss",
        help="what chooses the best epoch (and early stopping)",
    )
    t.add_argument("--patience", type=int, default=0, help="early stopping; 0: off")
    t.add_argument(
        "--select",
        choices=("best", "last"),
        default="best",
        help="keep the epoch best by --monitor (as restore_best_weights) or the last one",
    )
    t.add_argument(
        "--ema", type=float, default=0.0, help="EMA of the weights with this momentum; 0: off"
    )
    t.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="stop after the epoch that passes this many seconds; 0: off",
    )
    t.add_argument("--limit", type=int, default=0, help="use only the first N train images")
    t.add_argument("--save", action="store_true", help="save the best model as model.keras")
    t.add_argument(
        "--test", action="store_true", help="also report test accuracy (final recipe only)"
    )

    s = sub.add_parser("speed", help="interleaved per-image training cost of variants")
    s.add_argument(
        "--variant",
        action="append",
        required=True,
        help="key=value list over train's options, e.g. "
        "arch=xception,size=128,precision=mixed_bfloat16,aug=flip+rot=0.1",
    )
    s.add_argument("--images", type=int, default=320, help="training images per round")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--out", default=None, help="JSON report")

    h = sub.add_parser(
        "manifest", help="--manifest from a project's split and a held-out folder as test"
    )
    h.add_argument("--project", required=True, help="a project whose split stage has run")
    h.add_argument("--held-out", dest="held_out", required=True, help="photos, e.g. select/")
    h.add_argument(
        "--fit-validation",
        dest="fit_validation",
        action="store_true",
        help="also train on the validation rows",
    )

    p = sub.add_parser("plot", help="validation accuracy against wall seconds")
    p.add_argument("--run", action="append", required=True, help="LABEL=RUN_FOLDER")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--budget", type=float, default=1800.0)
    p.add_argument("--title", default="From-scratch convnets on 2 CPU cores")

    m = sub.add_parser("table", help="a Markdown table of runs")
    m.add_argument("runs", nargs="+", help="run folders")

    c = sub.add_parser(
        "compare", help="held-out accuracy of --test runs against a base run, paired"
    )
    c.add_argument("base", help="the run the others are compared with")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--out", default=None, help="CSV of the rows")
    c.add_argument("--plot", default=None, help="PNG: each run's accuracy and interval")
    c.add_argument("--title", default="From-scratch variants on held-out photos")

    e = sub.add_parser("earlystop", help="replay early stopping on recorded curves")
    e.add_argument("runs", nargs="+", help="run folders")
    e.add_argument("--monitor", nargs="+", default=["val_loss", "val_accuracy"])
    e.add_argument("--patience", nargs="+", type=int, default=[5, 10, 15])

    args = parser.parse_args(argv)
    commands = {
        "train": train,
        "speed": speed,
        "plot": plot,
        "table": table,
        "compare": compare,
        "manifest": held_out_manifest,
        "earlystop": earlystop,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
