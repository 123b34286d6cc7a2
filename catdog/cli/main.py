"""The ``catdog`` command line: a table of commands, each a small function in :mod:`cli.commands`.

Every failure a user can cause ends in one ``catdog: error:`` line that names the key, file or
reference at fault and what to do, with exit code 2 (130 for Ctrl-C) and no traceback unless
``CATDOG_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.cli import arguments, commands

__all__ = ["COMMANDS", "QUIET_ENV", "Command", "build_parser", "main"]

# Quiet, offline-friendly defaults, set before Prefect, MLflow or TensorFlow are imported.
# Anything the user has set wins.
QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "KERAS_BACKEND": "tensorflow",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "catdog",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per model loaded: noise in logs
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # "Creating initial MLflow database tables..." etc.
}
DEBUG_VARIABLE = "CATDOG_DEBUG"

EPILOG = """\
examples:
  dvc repro                          the pipeline through DVC (each stage: catdog stage NAME)
  dvc exp run -S classifier.epochs=5 an experiment with a changed parameter
  catdog run                         the stages DVC finds stale, as one Prefect flow run
  catdog run -S classifier.epochs=5  the same, after writing the value into params.yaml
  catdog deploy                      the pipeline as Prefect deployments (run from Prefect's UI)
  catdog predict photos/ --out p.csv  probability of dog for each image (fine-tuned model)
  catdog explain photo.jpg --model models:/catdog@champion
                                     where the champion looked: a Grad-CAM overlay per photo
  catdog score photos/ --model models:/catdog@champion
                                     accuracy with its 95% interval on labelled photos
  catdog compare --out runs.md       the executions' test metrics and differing params
  catdog lineage catdog@champion     the data, commit and params behind the champion model
  catdog ui                          browse and compare the runs in MLflow's UI
"""


@dataclass(frozen=True)
class Command:
    """One ``catdog`` command: its help, its arguments and the function that runs it."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Path], int]


COMMANDS: tuple[Command, ...] = (
    Command(
        "stage",
        "run one stage as a Prefect flow (what dvc.yaml calls)",
        arguments.STAGE_DESCRIPTION,
        arguments.add_stage,
        commands.run_stage,
    ),
    Command(
        "run",
        "run the stages DVC finds stale as one Prefect flow run",
        "Ask DVC which stages are stale (as `dvc repro` would), run them as one Prefect flow "
        "run with a child flow run per stage and one MLflow parent run with a child per stage, "
        "and record each finished stage in dvc.lock. --params and -S are written into "
        "params.yaml first, as `dvc exp run -S` writes them.",
        arguments.add_run,
        commands.run_pipeline,
    ),
    Command(
        "params",
        "write a preset and -S values into params.yaml, and run nothing",
        "Lay a preset (--params FILE: the keys it sets) over the defaults and apply -S values, "
        "as `catdog run` does before it runs, and write the result into params.yaml; then "
        "`dvc repro` or `dvc exp run` runs with it. Nothing is written if a key or value is "
        "wrong, or while a run is using the file.",
        arguments.add_params,
        commands.write_params,
    ),
    Command(
        "dvc-yaml",
        "write dvc.yaml from the stage table (or check it is current)",
        "dvc.yaml is generated from catdog/stage_table.py, the one source of truth.",
        arguments.add_dvc_yaml,
        commands.write_dvc_yaml,
    ),
    Command(
        "predict",
        "probability of dog for image files or folders",
        "Score images with a trained model, through the same input path as training. Writes a "
        "CSV of path, prob_dog, label; unreadable files are skipped with a reason on stderr.",
        arguments.add_predict,
        commands.predict,
    ),
    Command(
        "explain",
        "where a model looked: Grad-CAM overlays and the probability of dog per photo",
        "For each photo, the probability of dog and a Grad-CAM heatmap of the predicted "
        "class (chapter 9 of the book) over the photo, written as a PNG into --out, with "
        "explain.csv (path, prob_dog, label, heatmap) beside them and on stdout. Any model "
        "`catdog predict` takes; unreadable files are skipped with a reason on stderr.",
        arguments.add_explain,
        commands.explain,
    ),
    Command(
        "score",
        "measure a model on labelled photos: accuracy with its 95% interval",
        arguments.SCORE_DESCRIPTION,
        arguments.add_score,
        commands.score,
    ),
    Command(
        "serve",
        "run an MLflow tracking server and a Prefect server for the project",
        "Start an MLflow tracking server (SQLite store and artifacts in the project) and a "
        "Prefect server, wait until both answer, print their URLs; Ctrl-C stops both.",
        arguments.add_serve,
        commands.serve,
    ),
    Command(
        "deploy",
        "register prefect.yaml's deployments, with run forms from params.yaml",
        "Create the process work pool `catdog` if it is missing and register the deployments "
        "prefect.yaml declares on the project's Prefect server (or PREFECT_API_URL's), with "
        "Prefect's own `prefect deploy`; each pipeline deployment's run form takes its defaults "
        "from params.yaml. `pipeline-from-git` (for workers on other machines) is deployed when "
        "the checkout has a git remote `origin`. Running it again changes nothing.",
        arguments.add_deploy,
        commands.deploy,
    ),
    Command(
        "compare",
        "compare pipeline executions from MLflow: test metrics and differing params",
        "Read the MLflow runs of an experiment into a table of each execution's test metrics "
        "per model with their 95% intervals, the params that differ between executions, the "
        "book's figures beside ours, and per model a ranking of the executions: those scored "
        "on the same test images are paired with the best one (McNemar's exact test), so the "
        "report says which differences are noise; write Markdown or HTML.",
        arguments.add_compare,
        commands.compare,
    ),
    Command(
        "lineage",
        "which data, commit and params made a registered model version",
        "Print the lineage of a registered model version from MLflow: the run that trained it, "
        "its git commit, the DVC hashes of its data (data/raw, manifest, features...), the "
        "VGG16 weights, the Prefect flow run and the params.",
        arguments.add_lineage,
        commands.lineage,
    ),
    Command(
        "ui",
        "open MLflow's UI on the project's tracking store",
        "Run `mlflow ui` on the project's store (or MLFLOW_TRACKING_URI) and print the URL of "
        "the project's experiment (params.yaml's mlflow.experiment) in MLflow's model-training "
        "view; MLflow's own home page opens in its GenAI view.",
        arguments.add_ui,
        commands.ui,
    ),
    Command(
        "prefect-server",
        "start, show or stop the project's local Prefect server",
        "The project's own Prefect server (its UI too), started on demand by the commands "
        "that run flows unless PREFECT_API_URL names another.",
        arguments.add_prefect_server,
        commands.prefect_server,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="catdog",
        description="Cat-vs-dog classifiers after chapter 8 of Deep Learning with Python, "
        "run as DVC stages and Prefect flows and tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help.replace("%", "%%"),  # argparse %-formats a subcommand's help
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


INTERRUPTED = (
    "interrupted (Ctrl-C): the stage that was running is not recorded as done; run the same "
    "command again to carry on from it"
)
#: How long after Ctrl-C the process may take to wind down before it exits regardless.
INTERRUPT_GRACE_S = 30.0


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"catdog: error: {message}\n")
    return code


def _fatal(message: str, *, exit_now: bool) -> int:
    """The line for a server that died mid-run or a disk that refused the work; as the command,
    then a prompt exit: Prefect's log and event workers would otherwise spend the exit retrying
    a dead server, in tracebacks after the line, and a library's finalizers may crash on a full
    disk."""
    code = _fail(message)
    if exit_now:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)
    return code


@contextlib.contextmanager
def _interrupt_ends_the_process() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual, and the process exits 130 within
    :data:`INTERRUPT_GRACE_S` even if a library swallows it (a retry loop around a network or
    database call can): nothing is recorded as done by then, outputs are written atomically,
    and the next run marks the stage's MLflow runs KILLED."""

    def give_up() -> None:
        sys.stderr.write(f"catdog: error: {INTERRUPTED}\n")
        sys.stderr.flush()
        os._exit(130)

    def on_interrupt(signum: int, frame: Any) -> None:
        timer = threading.Timer(INTERRUPT_GRACE_S, give_up)
        timer.daemon = True
        timer.start()
        signal.default_int_handler(signum, frame)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``catdog`` command."""
    args = build_parser().parse_args(argv)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    from catdog.cli.terminal import drop_false_retracing_warnings, quiet_tensorflow_import
    from catdog.errors import CatdogError, StorageError
    from catdog.servers.health import apply_http_defaults, server_lost_message
    from catdog.workspace.paths import find_workspace, use_workspace_code
    from catdog.workspace.storage import storage_fault_message

    apply_http_defaults()  # before Prefect reads its settings

    drop_false_retracing_warnings()
    quiet_tensorflow_import()
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        with _interrupt_ends_the_process():
            workspace = find_workspace()
            use_workspace_code(workspace)
            return int(args.handler(args, workspace))
    except CatdogError as error:
        if debug:
            raise
        if isinstance(error, StorageError):
            return _fatal(str(error), exit_now=argv is None)
        return _fail(str(error))
    except KeyboardInterrupt:
        if debug:
            raise
        return _fail(INTERRUPTED, 130)
    except Exception as error:
        message = server_lost_message(error) or storage_fault_message(error)
        if not message or debug:
            raise
        return _fatal(message, exit_now=argv is None)


if __name__ == "__main__":
    sys.exit(main())
