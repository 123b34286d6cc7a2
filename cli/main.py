"""The ``catdog`` command line: stages for DVC, the whole pipeline for Prefect, and helpers."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Quiet, offline-friendly defaults, set before Prefect, MLflow or TensorFlow are imported.
# Anything the user has set wins.
_QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "KERAS_BACKEND": "tensorflow",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "catdog",
}

EPILOG = """\
examples:
  dvc repro                          the pipeline through DVC (each stage: catdog stage NAME)
  dvc exp run -S classifier.epochs=5 an experiment with a changed parameter
  catdog run                         the same stages as one Prefect flow run
  catdog run -S classifier.epochs=5  with a changed parameter (params.yaml is left as it is)
  catdog predict photos/ --out p.csv  probability of dog for each image (fine-tuned model)
  catdog compare --out runs.md       the executions' test metrics and differing params
  catdog lineage catdog@champion     the data, commit and params behind the champion model
  catdog ui                          browse and compare the runs in MLflow's UI
"""


def _prepare_environment(workspace: Path) -> None:
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    from servers.prefect import ensure_prefect_api
    from workspace.paths import state_dir, tracking_home

    os.environ["PREFECT_API_URL"] = ensure_prefect_api(state_dir(tracking_home(workspace)))


def _add_params_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        default="params.yaml",
        metavar="FILE",
        help="params file, relative to the project root (default: %(default)s)",
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter, e.g. -S classifier.epochs=5 (repeatable)",
    )


def _add_dask_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        help="run the features stage's shards on this Dask scheduler, e.g. tcp://10.0.0.5:8786 "
        "(default: $CATDOG_DASK_ADDRESS, else threads in this process)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and ``--help``)."""
    from catdog.stage_table import STAGES

    parser = argparse.ArgumentParser(
        prog="catdog",
        description="Cat-vs-dog classifiers after chapter 8 of Deep Learning with Python, "
        "run as DVC stages and Prefect flows and tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stage = commands.add_parser(
        "stage",
        help="run one stage as a Prefect flow (what dvc.yaml calls)",
        description="Run one pipeline stage as a Prefect flow, logged as a child MLflow run.\n\n"
        + "\n".join(f"  {s.name:<11} {s.description}" for s in STAGES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stage.add_argument("name", choices=[s.name for s in STAGES], metavar="NAME")
    _add_params_options(stage)
    _add_dask_option(stage)

    run = commands.add_parser(
        "run",
        help="run the whole pipeline as one Prefect flow run",
        description="Run every stage that is not up to date as one Prefect flow run with a "
        "task run per stage, and one MLflow parent run with a child run per stage.",
    )
    _add_params_options(run)
    run.add_argument("--force", action="store_true", help="run every stage, even if up to date")
    _add_dask_option(run)

    dvc_yaml = commands.add_parser(
        "dvc-yaml",
        help="write dvc.yaml from the stage table (or check it is current)",
        description="dvc.yaml is generated from catdog/pipeline.py, the one source of truth.",
    )
    dvc_yaml.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is stale")

    predict = commands.add_parser(
        "predict",
        help="probability of dog for image files or folders",
        description="Score images with a trained model, through the same input path as "
        "training. Writes a CSV of path, prob_dog, label; unreadable files are skipped with "
        "a reason on stderr.",
    )
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="images or folders")
    predict.add_argument(
        "--model",
        default="models/finetune.keras",
        metavar="REF",
        help="a .keras file, or an MLflow runs:/ or models:/ URI, e.g. models:/catdog@champion "
        "(default: %(default)s)",
    )
    predict.add_argument("--out", type=Path, metavar="FILE", help="CSV file (default: stdout)")
    predict.add_argument("--threshold", type=float, default=0.5, help="default: %(default)s")

    serve = commands.add_parser(
        "serve",
        help="run an MLflow tracking server and a Prefect server for the project",
        description="Start an MLflow tracking server (SQLite store and artifacts in the project) "
        "and a Prefect server, wait until both answer, print their URLs; Ctrl-C stops both.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: %(default)s (loopback)")
    serve.add_argument("--mlflow-port", type=int, default=5000, help="default: %(default)s")
    serve.add_argument("--prefect-port", type=int, default=4200, help="default: %(default)s")

    compare = commands.add_parser(
        "compare",
        help="compare pipeline executions from MLflow: test metrics and differing params",
        description="Read the MLflow runs of an experiment into a table of each execution's "
        "test metrics per model, the params that differ between executions, and the book's "
        "figures beside ours; write Markdown or HTML.",
    )
    compare.add_argument("--experiment", default="catdog", help="default: %(default)s")
    compare.add_argument("--out", type=Path, metavar="FILE", help=".md or .html (default: stdout)")
    compare.add_argument("--format", choices=["markdown", "html"], help="default: from --out")
    compare.add_argument(
        "--filter", default="", metavar="EXPR", help="MLflow search filter on the parent runs"
    )
    compare.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep executions that used this param value, e.g. classifier.epochs=5",
    )

    lineage = commands.add_parser(
        "lineage",
        help="which data, commit and params made a registered model version",
        description="Print the lineage of a registered model version from MLflow: the run "
        "that trained it, its git commit, the DVC hashes of its data (data/raw, manifest, "
        "features...), the VGG16 weights, the Prefect flow run and the params.",
    )
    lineage.add_argument(
        "reference",
        metavar="MODEL",
        help="NAME@ALIAS (e.g. catdog@champion), NAME/VERSION (e.g. catdog-scratch/2), or NAME",
    )
    lineage.add_argument("--json", action="store_true", help="print JSON instead of text")

    ui = commands.add_parser("ui", help="open MLflow's UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    ui.add_argument("--port", type=int, default=5000, help="default: %(default)s")

    server = commands.add_parser(
        "prefect-server", help="show or stop the shared local Prefect server"
    )
    server.add_argument("action", choices=["status", "stop"])
    return parser


def _dvc_yaml_text() -> str:
    import yaml

    from catdog.stage_table import dvc_yaml

    header = "# Generated by `catdog dvc-yaml` from catdog/pipeline.py: edit that, not this.\n"
    return header + yaml.safe_dump(dvc_yaml(), sort_keys=False, width=100)


def _cmd_dvc_yaml(workspace: Path, check: bool) -> int:
    target = workspace / "dvc.yaml"
    text = _dvc_yaml_text()
    if check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"{target} is stale: run `catdog dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    from catdog.io import write_text

    write_text(target, text)
    print(f"wrote {target}")
    return 0


def _cmd_ui(workspace: Path, host: str, port: int) -> int:
    from tracking.store import tracking_uri
    from workspace.paths import tracking_home

    uri = tracking_uri(tracking_home(workspace))
    artifacts = tracking_home(workspace) / "mlartifacts"
    print(f"MLflow UI on http://{host}:{port} for {uri} (Ctrl-C stops it)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host]
    command += ["--port", str(port), "--default-artifact-root", artifacts.as_uri()]
    os.execv(sys.executable, command)
    return 0  # not reached


def _cmd_prefect_server(workspace: Path, action: str) -> int:
    from servers.prefect import stop_prefect_server
    from workspace.paths import state_dir, tracking_home

    folder = state_dir(tracking_home(workspace))
    record = folder / "prefect-server.json"
    if action == "stop":
        stopped = stop_prefect_server(folder)
        print("stopped the shared Prefect server" if stopped else "no shared Prefect server")
        return 0
    print(record.read_text() if record.exists() else "no shared Prefect server")
    return 0


def _summary(workspace: Path, elapsed: float) -> str:
    from tracking.store import tracking_uri
    from workspace.paths import tracking_home

    return (
        f"pipeline done in {elapsed:.0f} s. Results:\n"
        f"  metrics      {workspace / 'reports/metrics.json'} (dvc metrics show)\n"
        f"  comparison   {workspace / 'reports/comparison.md'}\n"
        f"  figures      {workspace / 'reports/figures'} (dvc plots show)\n"
        f"  models       {workspace / 'models'}\n"
        f"  MLflow       {tracking_uri(tracking_home(workspace))} (catdog ui)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``catdog`` command."""
    args = build_parser().parse_args(argv)
    from workspace.paths import find_workspace

    workspace = find_workspace()
    if args.command == "dvc-yaml":
        return _cmd_dvc_yaml(workspace, args.check)
    if args.command == "ui":
        return _cmd_ui(workspace, args.host, args.port)
    if args.command == "prefect-server":
        return _cmd_prefect_server(workspace, args.action)
    if args.command == "compare":
        from tracking.compare import run_compare
        from tracking.store import tracking_uri
        from workspace.paths import tracking_home

        wanted = dict(item.split("=", 1) for item in args.param if "=" in item)
        return run_compare(
            tracking_uri(tracking_home(workspace)),
            args.experiment,
            args.out,
            args.format,
            args.filter,
            wanted,
        )
    if args.command == "lineage":
        from tracking.lineage import run_lineage
        from tracking.store import tracking_uri
        from workspace.paths import tracking_home

        try:
            sys.stdout.write(
                run_lineage(tracking_uri(tracking_home(workspace)), args.reference, args.json)
            )
        except ValueError as error:
            print(f"catdog: error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "serve":
        from servers.serve import serve
        from workspace.paths import tracking_home

        return serve(
            tracking_home(workspace),
            host=args.host,
            mlflow_port=args.mlflow_port,
            prefect_port=args.prefect_port,
        )
    if args.command == "predict":
        for key, value in _QUIET_ENV.items():
            os.environ.setdefault(key, value)
        from cli.commands import run_predict
        from workspace.paths import tracking_home

        try:
            return run_predict(
                args.paths,
                args.model,
                args.out,
                workspace,
                tracking_home(workspace),
                args.threshold,
            )
        except (FileNotFoundError, ValueError) as error:
            print(f"catdog: error: {error}", file=sys.stderr)
            return 2

    from catdog.ingest import IngestError
    from catdog.params import ParamsError, load_params
    from catdog.weights import WeightsUnavailableError
    from servers.health import TrackingServerError, require_tracking_server, tracking_lost_message
    from workspace.paths import tracking_home

    try:
        load_params(workspace / args.params, args.overrides)  # fail fast, before any server
        require_tracking_server(tracking_home(workspace))  # seconds, not minutes of retries
        _prepare_environment(workspace)
        started = time.perf_counter()
        if args.command == "stage":
            from flows.stages import STAGE_FLOWS
            from servers.dask import with_task_runner

            stage_flow = with_task_runner(STAGE_FLOWS[args.name], args.dask_address)
            stage_flow(str(workspace), args.params, list(args.overrides))
        else:
            from flows.pipeline import pipeline_flow
            from servers.dask import with_task_runner

            run_flow = with_task_runner(pipeline_flow, args.dask_address)
            fates = run_flow(str(workspace), args.params, list(args.overrides), args.force)
            ran = [name for name, fate in fates.items() if fate == "ran"]
            print(f"ran: {', '.join(ran) or 'nothing (all up to date)'}")
            print(_summary(workspace, time.perf_counter() - started))
    except (ParamsError, WeightsUnavailableError, IngestError, TrackingServerError) as error:
        print(f"catdog: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        message = tracking_lost_message(error)
        if not message:
            raise
        print(f"catdog: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
