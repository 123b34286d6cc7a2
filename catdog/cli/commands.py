"""What each ``catdog`` command does, one small function per command (the table is in
:mod:`catdog.cli.main`).

Commands import what they need when they run, so ``catdog --help``, ``catdog compare`` and the
ingest stage never pay for TensorFlow, and only commands that run flows start Prefect.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog.workspace.execution import require_git_checkout
from catdog.workspace.lock import dvc_ancestor, hold_workspace
from catdog.workspace.paths import tracking_home

if TYPE_CHECKING:
    from catdog.params import Params
    from catdog.workspace.params_file import ParamsUpdate

__all__ = [
    "compare",
    "deploy",
    "explain",
    "lineage",
    "predict",
    "prefect_server",
    "run_pipeline",
    "run_predict",
    "run_score",
    "run_stage",
    "score",
    "serve",
    "ui",
    "write_dvc_yaml",
]


def _hide_console_tracebacks() -> None:
    from catdog.cli.terminal import hide_console_tracebacks

    if os.environ.get("CATDOG_DEBUG", "") in ("", "0"):
        hide_console_tracebacks()


def _connect_servers(workspace: Path) -> None:
    """Point Prefect at its server once the servers answer; tracebacks off the console."""
    from catdog.servers.connect import connect_servers

    connect_servers(workspace)
    _hide_console_tracebacks()


def _check_tracking_server(workspace: Path) -> str:
    from catdog.servers.connect import check_tracking_server

    return check_tracking_server(workspace)


def _check_inputs(workspace: Path) -> Callable[[Params], None]:
    """The checks before any work (:func:`catdog.servers.connect.check_run_inputs`), then the
    console's tracebacks hidden."""
    from catdog.servers.connect import check_run_inputs

    inputs = check_run_inputs(workspace)

    def check(params: Params) -> None:
        inputs(params)
        _hide_console_tracebacks()

    return check


def _say_params(update: ParamsUpdate) -> None:
    """Say what was written into params.yaml, if anything."""
    settings = " ".join(f"-S {o}" for o in update.overrides)
    if update.preset:
        extra = f" with {settings}" if settings else ""
        message = f"params.yaml now holds the defaults with {update.preset} over them{extra}"
        sys.stderr.write(f"catdog: {message} (git diff params.yaml)\n")
    elif update.changed:
        sys.stderr.write(f"catdog: params.yaml: wrote {settings} (git diff params.yaml)\n")


def run_stage(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog stage NAME``: one stage; recorded in dvc.lock by DVC, or here when run by hand."""
    from catdog.errors import ParamsError
    from catdog.params import load_params
    from catdog.workspace.params_file import PARAMS_FILE, apply_params, require_params_unchanged

    under_dvc = dvc_ancestor() is not None
    if under_dvc and (args.params or args.overrides):
        raise ParamsError(
            "--params / -S: under DVC a stage's params are params.yaml, as dvc.lock records "
            "them; change them with `dvc exp run -S KEY=VALUE` instead"
        )
    if not under_dvc:
        require_git_checkout(workspace)
    with hold_workspace(workspace, f"catdog stage {args.name}"):
        if under_dvc:  # dvc.lock records params.yaml as it is
            _check_inputs(workspace)(load_params(workspace / PARAMS_FILE, display=PARAMS_FILE))
        else:
            update = apply_params(
                workspace, args.params, args.overrides, check=_check_inputs(workspace)
            )
            _say_params(update)
        snapshot = (workspace / PARAMS_FILE).read_bytes()  # what the stage reads
        from prefect import tags

        from catdog.servers.dask import with_task_runner
        from catdog.workspace.dvc_state import DvcRecord
        from catdog.workspace.execution import describe_execution
        from catdog.workspace.lock import run_owner
        from flows.stages import STAGE_FLOWS, trigger

        stage_flow = with_task_runner(STAGE_FLOWS[args.name], args.dask_address)
        info = describe_execution(workspace, trigger(), run_owner(trigger()))
        with tags(*info.tags(), f"stage:{args.name}"):  # the UI filters one execution's runs
            if under_dvc:  # a failed stage is not recorded by DVC
                stage_flow(str(workspace), label=info.label)
                require_params_unchanged(workspace, snapshot, args.name)
                return 0
            record = DvcRecord(workspace)
            with record.locked():
                stage_flow(str(workspace), label=info.label)
                require_params_unchanged(workspace, snapshot, args.name)
                record.commit(args.name)
    return 0


def run_pipeline(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog run``: the stages DVC finds stale, as one Prefect flow run."""
    from catdog.workspace.params_file import apply_params

    started = time.perf_counter()
    require_git_checkout(workspace)
    with hold_workspace(workspace, "catdog run"):
        update = apply_params(
            workspace, args.params, args.overrides, check=_check_inputs(workspace)
        )
        _say_params(update)
        from prefect import tags

        from catdog.servers.dask import with_task_runner
        from catdog.workspace.execution import describe_execution
        from catdog.workspace.lock import run_owner
        from flows.pipeline import pipeline_flow
        from flows.stages import RUN_TRIGGER as TRIGGER

        info = describe_execution(workspace, TRIGGER, run_owner(TRIGGER))
        run_flow = with_task_runner(pipeline_flow, args.dask_address)
        with tags(*info.tags()):
            fates = run_flow(root=str(workspace), force=args.force)
    ran = [name for name, fate in fates.items() if fate != "up to date"]
    sys.stdout.write(f"ran: {', '.join(ran) or 'nothing (all up to date)'}\n")
    sys.stdout.write(_summary(workspace, time.perf_counter() - started) + "\n")
    return 0


def write_params(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog params``: write a preset and overrides into params.yaml; run nothing."""
    from catdog.workspace.params_file import apply_params

    with hold_workspace(workspace, "catdog params"):  # not under a run that is using the file
        update = apply_params(workspace, args.params, args.overrides)
    _say_params(update)
    if not update.changed:
        sys.stderr.write("catdog: params.yaml already holds these params\n")
    return 0


def _summary(workspace: Path, elapsed: float) -> str:
    from catdog.tracking.store import tracking_uri

    return (
        f"pipeline done in {elapsed:.0f} s. Results:\n"
        f"  metrics      {workspace / 'reports/metrics.json'} (dvc metrics show)\n"
        f"  comparison   {workspace / 'reports/comparison.md'}\n"
        f"  figures      {workspace / 'reports/figures'} (dvc plots show)\n"
        f"  models       {workspace / 'models'}\n"
        f"  MLflow       {tracking_uri(tracking_home(workspace))} (catdog ui)"
    )


def dvc_yaml_text() -> str:
    """What ``dvc.yaml`` must hold: the stage table, as YAML."""
    import yaml

    from catdog.stage_table import dvc_yaml

    header = "# Generated by `catdog dvc-yaml` from catdog/stage_table.py: edit that, not this.\n"
    return header + yaml.safe_dump(dvc_yaml(), sort_keys=False, width=100)


def write_dvc_yaml(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog dvc-yaml``: write dvc.yaml from the stage table, or check it is current."""
    from catdog.io import write_text

    target = workspace / "dvc.yaml"
    text = dvc_yaml_text()
    if args.check:
        if (target.read_text() if target.exists() else "") != text:
            sys.stderr.write(f"{target} is stale: run `catdog dvc-yaml`\n")
            return 1
        sys.stdout.write(f"{target} is current\n")
        return 0
    write_text(target, text)
    sys.stdout.write(f"wrote {target}\n")
    return 0


def run_predict(
    inputs: list[Path],
    reference: str,
    out: Path | None,
    workspace: Path,
    home: Path,
    threshold: float = 0.5,
) -> int:
    """Write path, prob_dog, label as CSV (stdout or ``out``); skipped files go to stderr."""
    from catdog.io import write_text
    from catdog.predict import collect_images, predict_images
    from catdog.tracking.models import load_model_reference

    files, problems = collect_images(inputs)
    model = load_model_reference(reference, workspace, home)
    table, skipped = predict_images(model, files, threshold=threshold)
    for path, reason in [*problems, *skipped]:
        sys.stderr.write(f"catdog predict: skipped {path}: {reason}\n")
    text = table.to_csv(index=False, lineterminator="\n")
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        sys.stderr.write(f"wrote {len(table)} predictions to {out}\n")
    return 0 if len(table) else 1


def _kept_by_project(target: Path, workspace: Path) -> str:
    """Why the project keeps ``target`` (git tracks it, or dvc.lock records it), or ''."""
    import yaml

    try:
        relative = target.relative_to(workspace.resolve())
    except ValueError:
        return ""
    listed = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "--", str(relative)],
        cwd=workspace,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        return "git tracks"
    lock = workspace / "dvc.lock"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    for stage, entry in stages.items():
        for output in entry.get("outs", []):
            made = (workspace / output["path"]).resolve()
            if target == made or made in target.parents:
                return f"dvc.lock records as an output of {stage}"
    return ""


def _check_out(
    out: Path | None,
    inputs: list[Path],
    workspace: Path,
    kind: str,
    example: str,
    suffixes: tuple[str, ...],
    *,
    makes_folder: bool = False,
) -> None:
    """Stop before any work if ``--out`` cannot be written or would overwrite something else:
    an input, a file the project keeps (git, dvc.lock), or one whose suffix is not a ``kind``'s.
    """
    from catdog.errors import CatdogError

    if out is None:
        return
    target = out.resolve()
    kept = _kept_by_project(target, workspace) if target.exists() else ""
    if kept:
        raise CatdogError(
            f"--out {out}: would overwrite a file that {kept}; give a new file name ending in "
            f"{' or '.join(suffixes)}"
        )
    if not target.parent.is_dir() and not makes_folder:
        raise CatdogError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    if target.is_dir():
        raise CatdogError(f"--out {out}: is a folder; give a file name, e.g. {out}/{example}")
    if any(target == path.resolve() for path in inputs) or (
        target.exists() and target.suffix.lower() not in suffixes
    ):
        raise CatdogError(
            f"--out {out}: would overwrite a file that is not a {kind}; give a new file name "
            f"ending in {' or '.join(suffixes)}"
        )


def predict(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog predict``: probability of dog for image files or folders."""
    _check_threshold(args.threshold)
    _check_out(args.out, args.paths, workspace, "predictions CSV", "p.csv", (".csv",))
    if args.model.startswith(("runs:/", "models:/")):
        _check_tracking_server(workspace)
    return run_predict(
        args.paths, args.model, args.out, workspace, tracking_home(workspace), args.threshold
    )


def explain(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog explain``: probability of dog and a Grad-CAM overlay for each photo."""
    from catdog.errors import CatdogError

    _check_threshold(args.threshold)
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise CatdogError(f"--out {args.out}: is a file; give a folder for the overlays")
    for path in args.paths:
        folder = path.resolve()
        if folder.is_dir() and (out == folder or folder in out.parents):
            raise CatdogError(
                f"--out {args.out}: lies in the photos' folder {path}, where the next run "
                "would read the overlays as photos; give another folder"
            )
    if args.model.startswith(("runs:/", "models:/")):
        _check_tracking_server(workspace)
    return run_explain(args.paths, args.model, args.out, workspace, args.threshold)


def run_explain(
    inputs: list[Path], reference: str, out: Path, workspace: Path, threshold: float = 0.5
) -> int:
    """Write the overlays into ``out``, and path, prob_dog, label, heatmap as CSV to stdout and
    ``out/explain.csv``; skipped files go to stderr."""
    from catdog.errors import ModelReferenceError
    from catdog.gradcam import find_gradcam_layer
    from catdog.io import write_text
    from catdog.predict import collect_images, explain_images
    from catdog.tracking.models import load_model_reference

    files, problems = collect_images(inputs)
    model = load_model_reference(reference, workspace, tracking_home(workspace))
    try:
        layer = find_gradcam_layer(model).name
    except ValueError as error:
        raise ModelReferenceError(f"--model {reference}: {error}") from None
    table, skipped = explain_images(model, files, out, threshold=threshold)
    for path, reason in [*problems, *skipped]:
        sys.stderr.write(f"catdog explain: skipped {path}: {reason}\n")
    text = table.to_csv(index=False, lineterminator="\n")
    sys.stdout.write(text)
    if len(table):
        write_text(out / "explain.csv", text)
        sys.stderr.write(
            f"wrote {len(table)} Grad-CAM overlays (layer {layer}) and explain.csv to {out}\n"
        )
    return 0 if len(table) else 1


def _experiment_name(workspace: Path) -> str:
    """params.yaml's ``mlflow.experiment`` (MLflow's experiment of the pipeline's runs).

    Read without validating the rest of the file: a command that only reads or logs to MLflow
    should not stop on a stage's bad value."""
    from catdog.params import MlflowParams, read_params_file
    from catdog.workspace.params_file import PARAMS_FILE

    path = workspace / PARAMS_FILE
    section = read_params_file(path, display=PARAMS_FILE).get("mlflow") if path.is_file() else None
    name = section.get("experiment") if isinstance(section, dict) else None
    return str(name or MlflowParams().experiment)


def _check_threshold(threshold: float) -> None:
    from catdog.errors import CatdogError

    if not 0 < threshold < 1:  # NaN too
        raise CatdogError(
            f"--threshold {threshold:g}: must lie strictly between 0 and 1; a photo is called "
            "dog at or above it (e.g. --threshold 0.5)"
        )


def _check_score_source(source: Path) -> None:
    """Stop before any work if the source to score is missing or not a folder or a zip."""
    from catdog.errors import SourceError

    what = "give a folder of cat.N.jpg/dog.N.jpg photos, class folders cats/ dogs/, or a .zip"
    if not source.exists():
        raise SourceError(f"{source}: no such folder or .zip; {what}")
    if not (source.is_dir() or (source.is_file() and source.suffix.lower() == ".zip")):
        raise SourceError(f"{source}: neither a folder nor a .zip; {what}")


def _prepare_score_source(source: Path, scratch: Path) -> Any:
    """The folder as is, or the zip extracted into ``scratch``; named as the user named them."""
    from catdog.errors import SourceError
    from catdog.sources import prepare_source

    try:
        return prepare_source(source, scratch)
    except SourceError as error:  # its messages name the pipeline's key; here it is FOLDER
        raise SourceError(str(error).removeprefix("data.source: ")) from None


def run_score(
    source: Path,
    reference: str,
    workspace: Path,
    home: Path,
    *,
    threshold: float = 0.5,
    out: Path | None = None,
    log: bool = True,
    experiment: str = "catdog",
) -> int:
    """Score a model on a folder or zip of labelled photos: the report on stdout, skipped files
    on stderr, the per-photo CSV in ``out`` if given, and an MLflow run unless ``log`` is off."""
    import tempfile

    from catdog.io import write_text
    from catdog.score import find_photos, render_report, score_photos

    _check_threshold(threshold)
    _check_score_source(source)
    _check_out(
        out, [source], workspace, "per-photo CSV", "photos.csv", (".csv",), makes_folder=True
    )
    with tempfile.TemporaryDirectory(prefix="catdog-score-") as scratch:
        prepared = _prepare_score_source(source, Path(scratch))
        found = find_photos(prepared, str(source))
        from catdog.tracking.models import (
            load_model_reference,  # TensorFlow: after the cheap checks
        )

        model = load_model_reference(reference, workspace, home)
        result = score_photos(model, found, threshold=threshold)
    where = source.parent if source.is_file() else source  # a zip's paths start with its name
    for path, reason in result.skipped:
        sys.stderr.write(f"catdog score: skipped {where / path}: {reason}\n")
    report = render_report(result)
    sys.stdout.write(report)
    if out is not None:
        write_text(out, result.photos_csv())
        sys.stderr.write(f"catdog score: wrote {result.images:,} rows to {out}\n")
    if log:
        _log_score(result, source, reference, home, experiment, report)
    return 0


def _log_score(
    result: Any, source: Path, reference: str, home: Path, experiment: str, report: str
) -> None:
    from catdog.tracking.evaluation import log_score

    logged = log_score(
        result, source=source, model_ref=reference, home=home, experiment=experiment, report=report
    )
    sys.stderr.write(f"catdog score: logged to MLflow: {logged.url}\n")
    if logged.version:
        sys.stderr.write(f"catdog score: {logged.version} now shows this score in its tags\n")


def score(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog score FOLDER --model REF``: accuracy with its 95% interval on labelled photos."""
    _check_threshold(args.threshold)
    _check_score_source(args.source)
    if args.log or args.model.startswith(("runs:/", "models:/")):
        _check_tracking_server(workspace)
    return run_score(
        args.source,
        args.model,
        workspace,
        tracking_home(workspace),
        threshold=args.threshold,
        out=args.out,
        log=args.log,
        experiment=_experiment_name(workspace),
    )


def serve(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog serve``: MLflow and Prefect servers for a team."""
    from catdog.servers.serve import ServeOptions
    from catdog.servers.serve import serve as serve_both

    options = ServeOptions(
        host=args.host,
        mlflow_port=args.mlflow_port,
        prefect_port=args.prefect_port,
        auth=args.auth,
        credentials_file=args.credentials,
        allowed_hosts=args.allowed_hosts,
        cors_origins=args.cors_allowed_origins,
        advertise=args.advertise,
        worker_pool=args.worker,
    )
    return serve_both(tracking_home(workspace), options)


def deploy(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog deploy``: prefect.yaml's deployments, their run forms from params.yaml."""
    from catdog.servers.deployments import deploy as deploy_all

    require_git_checkout(workspace)
    _connect_servers(workspace)
    for line in deploy_all(workspace):
        sys.stdout.write(f"{line}\n")
    sys.stdout.write(
        "run one: `prefect deployment run catdog-pipeline/pipeline` or the deployment's Run "
        "button in Prefect's UI; a worker must be running: `prefect worker start --pool catdog` "
        "(or `catdog serve --worker`)\n"
    )
    return 0


def compare(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog compare``: the executions' test metrics and differing params, from MLflow."""
    from catdog.tracking.compare import run_compare

    wanted = dict(item.split("=", 1) for item in args.param if "=" in item)
    _check_out(
        args.out, [], workspace, "comparison report", "runs.md", (".md", ".html"), makes_folder=True
    )
    uri = _check_tracking_server(workspace)
    return run_compare(
        uri, args.experiment, args.out, args.format, args.filter, wanted, model=args.model
    )


def lineage(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog lineage MODEL``: the data, commit and params behind a registered model."""
    from catdog.tracking.lineage import run_lineage

    uri = _check_tracking_server(workspace)
    sys.stdout.write(run_lineage(uri, args.reference, args.json))
    return 0


def _find_experiment(uri: str, name: str) -> str | None:
    """The id of the experiment ``name`` in the store at ``uri``; None if it is not there.

    A SQLite store that does not exist yet is not created (MLflow's UI creates it)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        found = MlflowClient(uri).get_experiment_by_name(name)
    except (MlflowException, OSError):  # a server that is down: the UI's home still helps
        return None
    return found.experiment_id if found is not None else None


def ui(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog ui``: MLflow's UI on the project's store (replaces this process)."""
    from catdog.tracking.store import MODEL_TRAINING_VIEW, tracking_uri
    from catdog.workspace.paths import MLFLOW_ARTIFACTS

    home = tracking_home(workspace)
    uri = tracking_uri(home)
    experiment = _experiment_name(workspace)
    experiment_id = _find_experiment(uri, experiment)
    base = f"http://{args.host}:{args.port}/#"
    if experiment_id:
        page = f"{base}/experiments/{experiment_id}/runs?{MODEL_TRAINING_VIEW}"
        sys.stdout.write(f"MLflow UI on {page} for {uri} (Ctrl-C stops it)\n")
    else:
        page = f"{base}/?{MODEL_TRAINING_VIEW}"
        sys.stdout.write(
            f"MLflow UI on {page} for {uri} (Ctrl-C stops it); no experiment {experiment!r} "
            "there yet: run the pipeline first (dvc repro or catdog run)\n"
        )
    sys.stdout.flush()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port)]
    command += ["--artifacts-destination", str(home / MLFLOW_ARTIFACTS)]
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job-consumer processes
    os.execv(sys.executable, command)
    return 0  # not reached


def prefect_server(args: argparse.Namespace, workspace: Path) -> int:
    """``catdog prefect-server start|status|stop``: the project's own Prefect server."""
    from catdog.servers.health import is_healthy
    from catdog.servers.prefect import ensure_prefect_api, recorded_api_url, stop_prefect_server

    home = tracking_home(workspace)
    if args.action == "stop":
        stopped = stop_prefect_server(home)
        sys.stdout.write("stopped the project's Prefect server\n" if stopped else "none running\n")
        return 0
    if args.action == "start":
        url = ensure_prefect_api(home)
    else:
        url = recorded_api_url(home)
        if not (url and is_healthy(f"{url}/health")):
            sys.stdout.write("the project's Prefect server is not running\n")
            return 1
    sys.stdout.write(f"Prefect server {url.removesuffix('/api')} (UI), API {url}\n")
    return 0
