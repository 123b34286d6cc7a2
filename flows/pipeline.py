"""The whole pipeline as one Prefect flow run (``catdog run``, or a run of a deployment from
Prefect's UI or ``prefect deployment run``): a child flow run per stage that DVC finds stale, each
recorded in ``dvc.lock`` as soon as it finishes.

DVC decides (:mod:`catdog.workspace.dvc_state`): a stage runs when its code, data or params differ
from what ``dvc.lock`` recorded, or its outputs are missing or modified, exactly as for ``dvc
repro``; a stage whose inputs ran before is restored from DVC's run cache instead. ``params.yaml``
holds the run's params.

The flow's parameters are the sections of ``params.yaml``, typed by the same schema
(:mod:`catdog.params`), so Prefect's *Custom run* form shows them with their ranges and
descriptions and refuses an impossible value before a run starts. What a run asks to change (the
form's fields that differ from its defaults, or the keys given with ``--param``) is written into
``params.yaml`` first, as ``catdog run -S`` writes it; everything else keeps the file's values.
The run holds the workspace and DVC's repository lock throughout.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, tags
from prefect.states import Failed, State
from pydantic import BaseModel

from catdog import stage_table
from catdog.errors import CatdogError
from catdog.params import (
    AugmentParams,
    ClassifierParams,
    DataParams,
    EvaluateParams,
    FeaturesParams,
    FiltersParams,
    FinetuneParams,
    IngestParams,
    MlflowParams,
    Params,
    ScratchParams,
    SplitParams,
    flat_params,
    given_values,
    read_params_file,
)
from catdog.servers.connect import check_run_inputs
from catdog.servers.dask import local_task_runner
from catdog.tracking.runs import finish_execution, open_execution
from catdog.workspace.dvc_state import DvcRecord
from catdog.workspace.execution import ExecutionInfo, describe_execution, require_git_checkout
from catdog.workspace.lock import hold_workspace, run_owner
from catdog.workspace.params_file import PARAMS_FILE, apply_params, require_params_unchanged
from catdog.workspace.paths import tracking_home
from catdog.workspace.publish import publish_results
from flows.stages import (
    STAGE_FLOWS,
    current_flow_run_id,
    current_flow_run_url,
    deployment_name,
    pipeline_trigger,
)
from tasks.common import run_logger

__all__ = ["pipeline_flow"]

DEFAULTS = Params()
FORM_ORIGIN = "the run's parameters"


def _execution_info(workspace: Path) -> ExecutionInfo:
    how = pipeline_trigger()
    return describe_execution(workspace, how, run_owner(how), deployment_name())


def _flow_run_name() -> str:
    """``pipeline · catdog run <time> <commit>``: the execution, in Prefect's UI."""
    from prefect.runtime import flow_run

    workspace = Path(flow_run.parameters.get("root", ".")).resolve()
    return f"pipeline · {_execution_info(workspace).label}"


@flow(
    name="catdog-pipeline",
    flow_run_name=_flow_run_name,
    log_prints=True,
    persist_result=False,  # DVC keeps the outputs; Prefect's copy would be a second store
    task_runner=local_task_runner(),  # a Dask cluster instead: catdog.servers.dask
)
def pipeline_flow(  # one parameter per params.yaml section: the run form
    data: DataParams = DEFAULTS.data,
    ingest: IngestParams = DEFAULTS.ingest,
    split: SplitParams = DEFAULTS.split,
    augment: AugmentParams = DEFAULTS.augment,
    features: FeaturesParams = DEFAULTS.features,
    filters: FiltersParams = DEFAULTS.filters,
    classifier: ClassifierParams = DEFAULTS.classifier,
    finetune: FinetuneParams = DEFAULTS.finetune,
    scratch: ScratchParams = DEFAULTS.scratch,
    evaluate: EvaluateParams = DEFAULTS.evaluate,
    mlflow: MlflowParams = DEFAULTS.mlflow,
    force: bool = False,
    publish: bool = False,
    root: str = ".",
) -> dict[str, str] | State:
    """Run every stage DVC finds stale, in order; return each stage's fate.

    Args:
        data: Where the images come from and the size every model sees them at.
        ingest: Decoding and checking the images.
        split: The train, validation and test split.
        augment: The augmented views of the training images.
        features: VGG16's conv base and the features it extracts.
        filters: VGG16 from the inside: a photo's activations, its filters' favourite inputs.
        classifier: The dense classifier on VGG16's features.
        finetune: Fine-tuning VGG16's block 5.
        scratch: The convnet trained from scratch.
        evaluate: Scoring on the test split, and when the champion moves.
        mlflow: The MLflow experiment the runs go to.
        force: Run every stage, even those DVC finds up to date.
        publish: Afterwards, `dvc push` the outputs and push a commit of dvc.lock and
            params.yaml to the branch's upstream (for a worker on another machine).
        root: The workspace (a deployment's runs start in it).

    Returns:
        ``{stage: "ran" | "restored" | "up to date"}``; a deployed run that fails a check ends
        Failed with the check's one line as its message.
    """
    sections = dict(zip(Params.model_fields, (data, ingest, split, augment, features, filters,
                                               classifier, finetune, scratch, evaluate, mlflow),
                        strict=True))  # fmt: skip
    given = _asked_values(sections, _form_defaults())
    workspace = Path(root).resolve()
    try:
        require_git_checkout(workspace)
        with hold_workspace(workspace, pipeline_trigger()):
            fates = _run_pipeline(workspace, given, force)
        if publish:
            message = f"catdog: outputs of {_execution_info(workspace).label}"
            run_logger().info("publish: %s", publish_results(workspace, message))
    except CatdogError as error:
        if not deployment_name():
            raise  # the command line says it in one line
        run_logger().error("catdog: error: %s", error)  # the flow run's log, and its state
        return Failed(message=str(error))
    return fates


def _form_defaults() -> dict[str, object]:
    """The deployment's parameters (its run form's defaults: params.yaml when it was deployed);
    {} for a run no deployment started."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    if not deployment.id:
        return {}
    # not prefect.runtime's deployment.parameters: that is this flow run's parameters
    with get_client(sync_client=True) as client:
        return dict(client.read_deployment(deployment.id).parameters or {})


def _asked_values(sections: dict[str, BaseModel], defaults: dict[str, object]) -> dict[str, object]:
    """What a run asks to change in params.yaml, as dotted keys: of a section as the form sends
    it (every key, its defaults filled in), the values that differ from the form's defaults; of a
    section given in part (``--param classifier='{"epochs": 5}'``), every value given. So a run
    with the form as it opened, a scheduled run among them, runs params.yaml as it is, even if
    the form's defaults are older."""
    asked: dict[str, object] = {}
    for name, section in sections.items():
        given = given_values(name, section)
        form = defaults.get(name)
        default = flat_params({name: form}) if isinstance(form, dict) else {}
        if set(given) == set(default):
            asked |= {k: v for k, v in given.items() if default[k] != v}
        else:
            asked |= given
    return asked


def _run_pipeline(workspace: Path, given: dict[str, object], force: bool) -> dict[str, str]:
    """Write the given params into params.yaml (after the checks), then run the stale stages."""
    current = flat_params(read_params_file(workspace / PARAMS_FILE, display=PARAMS_FILE))
    changed = {k: v for k, v in given.items() if current.get(k, object()) != v}
    update = apply_params(
        workspace, values=given, values_origin=FORM_ORIGIN, check=check_run_inputs(workspace)
    )
    if changed:
        settings = " ".join(f"-S {k}={v}" for k, v in changed.items())
        run_logger().info("params.yaml: wrote %s", settings)
    info = _execution_info(workspace)
    _name_flow_run(f"pipeline · {info.label}")  # "-dirty" once the values are written
    record = DvcRecord(workspace)
    try:
        with record.locked():
            return _run_stale_stages(workspace, record, update.params, info, force)
    finally:
        record.close()


def _name_flow_run(name: str) -> None:
    """Rename this flow run, so that Prefect and MLflow name the execution alike."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.id and flow_run.name != name:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=name)


def _run_stale_stages(
    workspace: Path, record: DvcRecord, params: Params, info: ExecutionInfo, force: bool
) -> dict[str, str]:
    snapshot = (workspace / PARAMS_FILE).read_bytes()  # what every stage of this run reads
    execution = None
    fates: dict[str, str] = {}
    for name in stage_table.STAGE_NAMES:
        require_params_unchanged(workspace, snapshot, name)
        if not force and not record.is_stale(name):
            fates[name] = "up to date"
        elif not force and record.restore(name):
            record.commit(name)
            fates[name] = "restored"  # from DVC's run cache, as `dvc repro` would
        else:
            if execution is None:
                execution = open_execution(
                    tracking_home(workspace),
                    workspace,
                    params.mlflow.experiment,
                    info,
                    key=f"catdog-run:{current_flow_run_id()}",
                    params=params.model_dump(),
                    tags={"prefect.flow_run_url": current_flow_run_url()},
                )
            with tags(*info.tags(), f"stage:{name}"):  # the UI filters one execution's runs
                STAGE_FLOWS[name](str(workspace), execution_key=execution.key, label=info.label)
            require_params_unchanged(workspace, snapshot, name)  # dvc.lock records what ran
            record.commit(name)
            fates[name] = "ran"
        run_logger().info("%s: %s", name, fates[name])
    if execution is not None:
        finish_execution(execution)
    return fates
