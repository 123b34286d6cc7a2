"""The arguments of each ``catdog`` command (the table of commands is in :mod:`catdog.cli.main`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from catdog.stage_table import MODELS, STAGES

__all__ = [
    "SCORE_DESCRIPTION",
    "STAGE_DESCRIPTION",
    "add_compare",
    "add_dvc_yaml",
    "add_explain",
    "add_lineage",
    "add_predict",
    "add_prefect_server",
    "add_run",
    "add_score",
    "add_serve",
    "add_stage",
    "add_ui",
]

STAGE_DESCRIPTION = (
    "Run one pipeline stage as a Prefect flow, logged as a child MLflow run. Under DVC "
    "(`dvc repro`) DVC records it in dvc.lock; run by hand, it holds DVC's lock and records it "
    "itself.\n\n" + "\n".join(f"  {s.name:<11} {s.description}" for s in STAGES)
)

SCORE_DESCRIPTION = """\
Measure a model on photos of your own, labelled by their names (cat.N.jpg, dog.N.jpg, as
Kaggle's) or their folders (cats/ dogs/, cat/ dog/, at any depth), in a folder or a .zip.

Prints a report: accuracy with its 95% interval and the photo counts, e.g.
  accuracy 83.6% [81.9, 85.2] on 2,000 photos (1,000 cats, 1,000 dogs)
then each class's recall with its interval, the confusion matrix, ROC AUC with its interval,
the most confident mistakes, the files skipped, and how wide an interval this many photos
allow. A folder with one class is scored, and the report says that the other class's recall
and ROC AUC are undefined.

Files not scored get one line each on stderr, `catdog score: skipped PATH: reason`: hidden
and system files, files with no cat/dog label, and images that cannot be decoded (truncated,
not an image, empty). Each photo goes through the same checks and input path as training.

Unless --no-log, the score is one MLflow run in params.yaml's mlflow.experiment (tags
catdog.kind=score, catdog.model_ref, catdog.source): the metrics with their intervals, the
per-photo CSV and the photos as a dataset whose digest is DVC's hash of FOLDER. With a
models:/ or runs:/ model, the metrics also go onto the logged model (score_accuracy, ...),
and a registered version gets the tag catdog.score.<folder name>.

Stops with one `catdog: error:` line (exit code 2) before scoring when FOLDER is missing,
is neither a folder nor a .zip, is empty, holds no labelled photo or no readable one, when
--threshold is outside (0, 1), or when --model names no usable model.\
"""


def _add_params_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        metavar="FILE",
        type=Path,
        help="a preset (e.g. params-book.yaml): the keys it sets, laid over the defaults in "
        "params.yaml first",
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="write a parameter into params.yaml first, as `dvc exp run -S` does, e.g. "
        "-S classifier.epochs=5 (repeatable)",
    )


def _add_dask_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        help="run the features stage's shards on this Dask scheduler, e.g. tcp://10.0.0.5:8786 "
        "(default: $CATDOG_DASK_ADDRESS, else threads in this process)",
    )


def add_stage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=[s.name for s in STAGES], metavar="NAME")
    _add_params_options(parser)
    _add_dask_option(parser)


def add_run(parser: argparse.ArgumentParser) -> None:
    _add_params_options(parser)
    parser.add_argument("--force", action="store_true", help="run every stage, even if up to date")
    _add_dask_option(parser)


def add_params(parser: argparse.ArgumentParser) -> None:
    _add_params_options(parser)


def add_dvc_yaml(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is stale")


def add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="images or folders")
    parser.add_argument(
        "--model",
        default="models/finetune.keras",
        metavar="REF",
        help="a .keras file, or an MLflow runs:/ or models:/ URI, e.g. models:/catdog@champion "
        "(default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="CSV file (default: stdout)")
    parser.add_argument("--threshold", type=float, default=0.5, help="default: %(default)s")


def add_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PHOTO", help="images or folders")
    parser.add_argument(
        "--model",
        default="models/finetune.keras",
        metavar="REF",
        help="a .keras file, or an MLflow runs:/ or models:/ URI, e.g. models:/catdog@champion "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("explanations"),
        metavar="DIR",
        help="folder for the overlays (PNG, one per photo) and explain.csv; created if missing "
        "(default: %(default)s)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="default: %(default)s")


def add_score(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        type=Path,
        metavar="FOLDER",
        help="photos named cat.N.jpg / dog.N.jpg, or in cats/ dogs/ folders (any depth), or a "
        ".zip of either (extracted into a temporary folder)",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="REF",
        help="a .keras file, or an MLflow URI: models:/NAME/VERSION, models:/NAME@ALIAS (e.g. "
        "models:/catdog@champion) or runs:/RUN_ID/NAME",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="CSV",
        help="also write the per-photo table (path, actual, predicted, prob_dog) here "
        "(default: only in the MLflow run)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        metavar="P",
        help="predicted dog at or above this probability of dog, in (0, 1) (default: %(default)s)",
    )
    parser.add_argument(
        "--no-log",
        dest="log",
        action="store_false",
        help="print the report only: no MLflow run, no metrics on the model or its version",
    )


def add_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="default: %(default)s (loopback, open); any other host requires credentials",
    )
    parser.add_argument("--mlflow-port", type=int, default=5000, help="default: %(default)s")
    parser.add_argument("--prefect-port", type=int, default=4200, help="default: %(default)s")
    parser.add_argument(
        "--auth",
        action="store_true",
        help="require credentials on loopback too (MLflow basic-auth, Prefect auth string)",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="read MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD and PREFECT_API_AUTH_STRING "
        "from this file (outside the repository) instead of the environment",
    )
    parser.add_argument(
        "--allowed-hosts",
        default="",
        metavar="HOSTS",
        help="Host headers MLflow accepts, comma-separated (default: this host's name and "
        "localhost, on the MLflow port)",
    )
    parser.add_argument(
        "--cors-allowed-origins",
        default="",
        metavar="ORIGINS",
        help="browser origins MLflow accepts, comma-separated (default: MLflow's, localhost)",
    )
    parser.add_argument(
        "--advertise",
        default="",
        metavar="NAME",
        help="the name teammates reach this machine by (default: --host, or the hostname)",
    )
    parser.add_argument(
        "--worker",
        nargs="?",
        const="catdog",
        default="",
        metavar="POOL",
        help="also run a Prefect worker for this work pool (default pool: catdog), which runs "
        "the deployments' flow runs on this machine",
    )


def add_deploy(parser: argparse.ArgumentParser) -> None:
    del parser  # no options: prefect.yaml says what to deploy, params.yaml the forms' defaults


def add_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="catdog", help="default: %(default)s")
    parser.add_argument("--out", type=Path, metavar="FILE", help=".md or .html (default: stdout)")
    parser.add_argument("--format", choices=["markdown", "html"], help="default: from --out")
    parser.add_argument(
        "--filter", default="", metavar="EXPR", help="MLflow search filter on the parent runs"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep executions that used this param value, e.g. classifier.epochs=5",
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        help="one model's test metrics and ranking (default: every model)",
    )


def add_lineage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reference",
        metavar="MODEL",
        help="NAME@ALIAS (e.g. catdog@champion), NAME/VERSION (e.g. catdog-scratch/2), or NAME",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_ui(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=5000, help="default: %(default)s")


def add_prefect_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "status", "stop"])
