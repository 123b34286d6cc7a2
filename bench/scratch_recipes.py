"""Time to accuracy: the book's from-scratch recipe against ours, through the pipeline's stages.

One clone of this repository (its committed HEAD) on the shared photos; for each recipe and seed,
``params.yaml`` becomes the preset (``params-book.yaml`` or ``params-best.yaml``) with the photos,
``split.counts`` and ``scratch.seed`` set, and ``dvc repro scratch`` runs ingest, split (once:
the split is seeded by the pipeline, not by the recipe) and scratch. Then:

* the scratch stage's own wall time, from its closing log line;
* validation accuracy against wall-clock seconds since the stage's MLflow run started, from the
  timestamps MLflow keeps for each epoch's metrics;
* test accuracy of ``models/scratch.keras`` on the test split, through ``catdog predict``'s
  input path, with a 95% Wilson interval.

Then the honest figures: the kept model is scored with ``catdog score`` on photos no choice was
made with, ``select/`` (2,000 photos to choose with) and ``report/`` (2,000 photos to report with,
once per recipe), of ``../shared/data/dogs-vs-cats-200px``, each with its 95% Wilson interval;
each score is an MLflow evaluation run in the clone's store.

Writes ``time_to_accuracy.csv`` (one row per epoch), ``summary.csv`` (one row per run) and
``time_to_accuracy.png`` into ``--out``; rows of earlier runs of other recipes or seeds are kept,
so recipes can be run one at a time. A ``note`` written into ``summary.csv`` by hand (e.g. that a
run shared the CPU) is shown in the figure's legend.

    python bench/scratch_recipes.py --recipe best --seeds 42 1 2
    python bench/scratch_recipes.py --recipe book -S scratch.epochs=30
    python bench/scratch_recipes.py --recipe best --label best-128px \
        -S data.image_size=128 -S scratch.epochs=80

``--label`` names the rows of a variant (default: the recipe), so it is kept beside the preset's.
``--score-only`` scores the models kept from earlier runs (``--work``/models) without training.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from catdog.intervals import wilson_interval  # noqa: E402  (the repository on the path first)

PRESETS = {"book": "params-book.yaml", "best": "params-best.yaml"}
PHOTOS = REPO.parent / "shared" / "data" / "dogs-vs-cats-2400" / "train"
HELD_OUT = REPO.parent / "shared" / "data" / "dogs-vs-cats-200px"
HELD_OUT_SETS = ("select", "report")
BUDGET_S = 1800.0
DONE = re.compile(r"scratch: done in ([0-9.]+) s")


def clone(work: Path) -> Path:
    """A clone of this repository's HEAD (kept between runs: DVC's cache spares the ingest)."""
    project = work / "project"
    if not project.is_dir():
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
    git = ["git", "-C", str(project)]
    subprocess.run([*git, "checkout", "-q", "--", "params.yaml"], check=True)
    subprocess.run([*git, "pull", "-q", "--ff-only"], check=True)
    return project


def run_recipe(project: Path, recipe: str, label: str, seed: int, args: argparse.Namespace) -> dict:
    """Configure and run ``dvc repro scratch``; return the run's measurements, named ``label``."""
    from catdog.workspace.params_file import apply_params

    overrides = [
        f"data.source={args.photos}",
        f"split.counts=[{','.join(str(c) for c in args.counts)}]",
        f"scratch.seed={seed}",
        # scratch reads no VGG16 weights, but every stage checks params.yaml's: the book's preset
        # asks for ImageNet's, which are not here offline
        "features.weights=none",
        *args.set,
    ]
    apply_params(project, REPO / PRESETS[recipe], overrides)
    env = bench_env()
    log = args.out / f"{label}-seed{seed}.log"
    print(f"[{label} seed {seed}] dvc repro scratch (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(
            ["dvc", "repro", "scratch"],
            cwd=project,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for line in process.stdout or ():
            handle.write(line)
            if " - scratch: epoch" in line or "done in" in line:
                print(f"[{label} seed {seed}] {line.strip()}", flush=True)
        if process.wait() != 0:
            raise SystemExit(f"dvc repro scratch failed; see {log}")
    elapsed = time.perf_counter() - start
    stage_s = [float(m.group(1)) for m in DONE.finditer(log.read_text())]
    if not stage_s:
        raise SystemExit(f"{log}: the scratch stage did not run (already up to date?)")
    # the clone's next run overwrites models/scratch.keras: keep this one for scoring
    kept = kept_model(args, label, seed)
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project / "models/scratch.keras", kept)
    return {"recipe": label, "seed": seed, "stage_s": stage_s[-1], "repro_s": round(elapsed, 1)}


def epochs_from_mlflow(project: Path) -> tuple[list[dict], dict]:
    """(seconds, val_accuracy, val_loss) per epoch of the newest scratch run, and its params."""
    from mlflow.tracking import MlflowClient

    from catdog.tracking.store import tracking_uri

    client = MlflowClient(tracking_uri(project))
    experiment = client.get_experiment_by_name("catdog")
    newest = client.search_runs(
        [experiment.experiment_id],
        "tags.`catdog.stage` = 'scratch'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    start = newest.info.start_time
    loss = {m.step: m.value for m in client.get_metric_history(newest.info.run_id, "val_loss")}
    rows = [
        {
            "epoch": m.step + 1,  # the stages log epoch metrics at step = epoch counted from 0
            "seconds": round((m.timestamp - start) / 1000, 1),
            "val_accuracy": m.value,
            "val_loss": loss.get(m.step, math.nan),
        }
        for m in sorted(
            client.get_metric_history(newest.info.run_id, "val_accuracy"), key=lambda m: m.step
        )
    ]
    return rows, newest.data.params


def test_accuracy(project: Path) -> tuple[int, int]:
    """(correct, total) of models/scratch.keras on the test split, as `catdog predict` scores."""
    from catdog.manifest import read_manifest, split_rows
    from catdog.models import load_model
    from catdog.predict import predict_images

    test = split_rows(read_manifest(project / "data/split/manifest.csv"), "test")
    frame, problems = predict_images(
        load_model(project / "models/scratch.keras"), [project / p for p in test["path"]]
    )
    assert not problems, problems
    return int((frame["label"].to_numpy() == test["label"].to_numpy()).sum()), len(test)


def score_held_out(project: Path, model: Path, args: argparse.Namespace) -> dict:
    """``catdog score`` of a kept model on select/ and report/: accuracy, interval and count."""
    import pandas as pd

    out: dict = {}
    for name in HELD_OUT_SETS:
        table = args.out / f"{model.stem}-{name}.csv"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "catdog"),
                "score",
                str(args.held_out / name),
                "--model",
                str(model),
                "--out",
                str(table),
            ],
            cwd=project,
            env=bench_env(),
            check=True,
        )
        scored = pd.read_csv(table)
        correct, total = int((scored["actual"] == scored["predicted"]).sum()), len(scored)
        low, high = wilson_interval(correct, total)
        out |= {
            f"{name}_accuracy": correct / total,
            f"{name}_ci_low": low,
            f"{name}_ci_high": high,
            f"{name}_photos": total,
        }
        table.unlink()  # 2,000 rows a set: the figures above are what is kept
    return out


def bench_env() -> dict[str, str]:
    """The pipeline's commands from this interpreter's environment, quiet, on the clone's store."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(DVC_NO_ANALYTICS="1", TF_CPP_MIN_LOG_LEVEL="3", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)  # the clone's own store
    return env


def kept_model(args: argparse.Namespace, label: str, seed: int) -> Path:
    return args.work / "models" / f"{label}-seed{seed}.keras"


def others(frame, recipe: str, seed: int):
    """The rows of ``frame`` from other recipes or seeds (a rerun replaces its own)."""
    if frame.empty:
        return frame
    return frame[~((frame["recipe"] == recipe) & (frame["seed"] == seed))]


def plot(epochs, summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=120)
    colours = {
        "book": "tab:gray",
        "best": "tab:blue",
        "best-val-epoch": "tab:cyan",
        "best-128px": "tab:orange",
    }
    names = {
        "book": "the book's recipe",
        "best": "ours (params-best.yaml)",
        "best-val-epoch": "ours, the epoch chosen on validation",
        "best-128px": "ours at 128 px, 80 epochs",
    }
    styles = ("-", "--", ":", "-.")
    for index, ((recipe, seed), part) in enumerate(epochs.groupby(["recipe", "seed"])):
        run = summary[(summary.recipe == recipe) & (summary.seed == seed)].iloc[0]
        label = (
            f"{names.get(recipe, recipe)}, seed {seed}: test {run.test_accuracy:.1%} "
            f"[{run.ci_low:.1%}, {run.ci_high:.1%}] in {run.stage_s:,.0f} s"
        )
        if math.isfinite(
            run.get("report_accuracy", math.nan)
        ):  # scored on photos never chosen with
            label += (
                f"; report/ {run.report_accuracy:.1%} [{run.report_ci_low:.1%}, "
                f"{run.report_ci_high:.1%}] of {int(run.report_photos):,}"
            )
        if isinstance(run.get("note"), str):  # e.g. a run that shared the CPU
            label += f" ({run.note})"
        axes.plot(
            part.seconds,
            part.val_accuracy,
            color=colours.get(recipe),
            linestyle=styles[index % len(styles)],
            alpha=0.85,
            label=label,
            linewidth=1.4,
        )
    axes.axvline(BUDGET_S, color="tab:red", linestyle="--", linewidth=1)
    axes.text(BUDGET_S, 0.97, " 30 min", color="tab:red")
    axes.axhline(0.9, color="tab:green", linestyle=":", linewidth=1)
    axes.set(
        xlabel="wall-clock seconds since the scratch stage started (2 CPU cores)",
        ylabel="validation accuracy (200 photos)",
        ylim=(0.5, 1.0),
        title="From scratch on the shared photos (1,000/100/100 per class), 2 CPU cores",
    )
    axes.grid(alpha=0.3)
    # below the axes: each entry carries its figures, too long to sit over the curves
    axes.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=8)
    figure.savefig(path, bbox_inches="tight")


def score_kept(args: argparse.Namespace) -> None:
    """Score each run of ``summary.csv`` whose model was kept, on select/ and report/."""
    import pandas as pd

    summary_csv = args.out / "summary.csv"
    summary = pd.read_csv(summary_csv)
    project = args.work / "project"
    for index, row in summary.iterrows():
        model = kept_model(args, row["recipe"], int(row["seed"]))
        if model.is_file():
            for key, value in score_held_out(project, model, args).items():
                summary.loc[index, key] = value
            print(f"[{row['recipe']} seed {row['seed']}] scored on select/ and report/", flush=True)
    summary.to_csv(summary_csv, index=False)
    epochs = pd.read_csv(args.out / "time_to_accuracy.csv")
    plot(epochs, summary, args.out / "time_to_accuracy.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=sorted(PRESETS), default="best")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="scratch.seed values")
    parser.add_argument("--label", help="name of the rows and logs (default: the recipe)")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--counts", type=int, nargs=3, default=[1000, 100, 100])
    parser.add_argument("-S", "--set", action="append", default=[], help="extra KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path("/tmp/catdog-scratch-recipes"))
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/scratch-recipes")
    parser.add_argument("--held-out", type=Path, default=HELD_OUT, help="select/ and report/")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the CSVs")
    parser.add_argument(
        "--score-only", action="store_true", help="score the kept models on select/ and report/"
    )
    args = parser.parse_args(argv)
    import pandas as pd

    if args.plot_only:
        epochs, summary = (
            pd.read_csv(args.out / f) for f in ("time_to_accuracy.csv", "summary.csv")
        )
        plot(epochs, summary, args.out / "time_to_accuracy.png")
        return

    args.out.mkdir(parents=True, exist_ok=True)
    if args.score_only:
        score_kept(args)
        return
    project = clone(args.work)
    epochs_csv, summary_csv = args.out / "time_to_accuracy.csv", args.out / "summary.csv"
    epochs = pd.read_csv(epochs_csv) if epochs_csv.is_file() else pd.DataFrame()
    summary = pd.read_csv(summary_csv) if summary_csv.is_file() else pd.DataFrame()
    label = args.label or args.recipe
    for seed in args.seeds:
        result = run_recipe(project, args.recipe, label, seed, args)
        rows, params = epochs_from_mlflow(project)
        correct, total = test_accuracy(project)
        low, high = wilson_interval(correct, total)
        result.update(
            test_accuracy=correct / total,
            ci_low=low,
            ci_high=high,
            test_photos=total,
            epochs=len(rows),
            arch=params.get("scratch.arch", "book"),
            image_size=params.get("data.image_size"),
            best_val_accuracy=max(r["val_accuracy"] for r in rows),
            **score_held_out(project, kept_model(args, label, seed), args),
        )
        print(f"[{label} seed {seed}] {result}", flush=True)
        run_rows = pd.DataFrame(rows).assign(recipe=label, seed=seed)
        epochs = pd.concat([others(epochs, label, seed), run_rows], ignore_index=True)
        summary = pd.concat(
            [others(summary, label, seed), pd.DataFrame([result])], ignore_index=True
        )
        epochs.to_csv(epochs_csv, index=False)
        summary.to_csv(summary_csv, index=False)
        plot(epochs, summary, args.out / "time_to_accuracy.png")
    print(summary.to_string(index=False))
    # the clone's own Prefect server outlives its runs (for its UI); this benchmark is done
    subprocess.run(
        [sys.executable, "-m", "catdog.cli", "prefect-server", "stop"], cwd=project, check=False
    )


if __name__ == "__main__":
    main()
