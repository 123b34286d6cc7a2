"""Every failure a user can cause ends in one `catdog: error:` line naming what is at fault,
exit code 2 (130 for Ctrl-C), no traceback, and nothing changed that a re-run would trust."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import bin_dir, make_project_copy, run, training_started, write_image

pytestmark = pytest.mark.e2e

CATDOG = str(bin_dir() / "catdog")


def fingerprint(project: Path) -> dict[str, str]:
    """Every file of the workspace but the MLflow store and catdog's own state, by content."""
    skip = {".catdog", "mlflow.db", "mlartifacts", ".git"}
    return {
        relative: hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(project.rglob("*"))
        if path.is_file()
        and not skip & set(path.relative_to(project).parts)
        and not (relative := path.relative_to(project).as_posix()).startswith(".dvc/tmp/")
    }


# TensorFlow's native start-up lines, printed whatever TF_CPP_MIN_LOG_LEVEL says.
TENSORFLOW_NOISE = ("oneDNN custom operations are on", "absl::InitializeLog()")


def quiet(stderr: str) -> bool:
    """True if none of TensorFlow's native start-up lines reached ``stderr``."""
    return not any(noise in stderr for noise in TENSORFLOW_NOISE)


def fails(cmd: list[str], project: Path, env: dict[str, str], code: int = 2) -> str:
    """Run ``cmd``, check it failed with ``code`` and no traceback; return its last stderr line."""
    result = run(cmd, project, env, check=False)
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert result.stderr.count(last.removeprefix("catdog: error: ")) == 1, result.stderr
    assert quiet(result.stderr), result.stderr[:3000]
    return last


@pytest.fixture(scope="module")
def env(prefect_api, tmp_path_factory):
    from tests.conftest import project_env

    return project_env(
        {
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": os.environ["PREFECT_HOME"],
            "KERAS_HOME": str(tmp_path_factory.mktemp("keras-home")),
        }
    )


@pytest.fixture
def project(tmp_path):
    return make_project_copy(tmp_path / "catdog")


@pytest.fixture(scope="module")
def ran_template(env, tmp_path_factory):
    """A project whose whole pipeline ran once, its results committed: what a user recovers to."""
    project = make_project_copy(tmp_path_factory.mktemp("ran") / "catdog")
    run([CATDOG, "run"], project, env)
    _git_commit_all(project)
    return project


@pytest.fixture
def ran_project(ran_template, tmp_path):
    """A private copy of ``ran_template`` (git and DVC cache included)."""
    return Path(
        shutil.copytree(
            ran_template, tmp_path / "catdog", symlinks=True, ignore=shutil.ignore_patterns("tmp")
        )
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "scratch.epochs=-1",
            "-S scratch.epochs=-1: scratch.epochs: Input should be greater than or equal to 1",
        ),
        (
            "classifier.epocs=3",
            "-S classifier.epocs=3: classifier.epocs: unknown key (did you mean 'epochs'?)",
        ),
        (
            "data.image_size=40",
            "-S data.image_size=40: data.image_size: must be at least 78 (the from-scratch "
            "convnet's five 3x3 convolutions and four poolings need it), got 40",
        ),
        (
            "data.source=nowhere/photos",
            "data.source: nowhere/photos does not exist; give a folder of cat.N.jpg/dog.N.jpg, "
            "class folders cats/ dogs/, or a zip of either",
        ),
    ],
)
def test_a_bad_setting_fails_before_any_work_naming_it(project, env, setting, message):
    before = fingerprint(project)
    assert fails([CATDOG, "run", "-S", setting], project, env) == f"catdog: error: {message}"
    assert fingerprint(project) == before  # params.yaml untouched, nothing made


def test_an_unreachable_prefect_api_fails_before_any_work_in_one_line(project, env):
    before = fingerprint(project)
    dead = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    line = fails([CATDOG, "run", "-S", "scratch.epochs=3"], project, dead)
    assert line.startswith(
        "catdog: error: PREFECT_API_URL=http://127.0.0.1:9/api: the Prefect server does not answer"
    )
    assert fingerprint(project) == before  # params.yaml untouched, nothing made


def test_an_empty_preset_fails_before_any_work_in_one_line(project, env, tmp_path):
    before = fingerprint(project)
    (tmp_path / "empty.yaml").write_text("")
    line = fails([CATDOG, "run", "--params", str(tmp_path / "empty.yaml")], project, env)
    assert line == (
        f"catdog: error: {tmp_path / 'empty.yaml'}: holds no params; a preset holds the keys it "
        "changes, e.g. `scratch: {epochs: 40}`"
    )
    assert fingerprint(project) == before


def test_a_bad_value_in_params_yaml_names_the_file(project, env):
    text = (project / "params.yaml").read_text().replace("epochs: 2", "epochs: 0", 1)
    (project / "params.yaml").write_text(text)
    before = fingerprint(project)
    assert fails([CATDOG, "stage", "ingest"], project, env) == (
        "catdog: error: params.yaml: classifier.epochs: Input should be greater than or equal to 1"
    )
    assert fingerprint(project) == before


def test_a_missing_weights_file_names_it(project, env):
    before = fingerprint(project)
    line = fails([CATDOG, "run", "-S", "features.weights=missing.weights.h5"], project, env)
    assert line.startswith(
        "catdog: error: features.weights: weights file 'missing.weights.h5' not found"
    )
    assert fingerprint(project) == before


def test_an_unknown_model_reference_names_it(project, env, tmp_path):
    photo = write_image(tmp_path / "cat.jpg")
    line = fails([CATDOG, "predict", "--model", "models:/nope@champion", str(photo)], project, env)
    assert line == (
        "catdog: error: --model models:/nope@champion: Registered Model with name=nope not "
        "found; see the registered models in MLflow's UI (catdog ui), or give a .keras file"
    )


def _photos(folder: Path, cats: int, dogs: int) -> Path:
    for i in range(cats):
        write_image(folder / f"cat.{i}.jpg", seed=i)
    for i in range(dogs):
        write_image(folder / f"dog.{i}.jpg", seed=100 + i)
    return folder


def _lock_stages(project: Path) -> list[str]:
    if not (project / "dvc.lock").exists():
        return []
    return list(yaml.safe_load((project / "dvc.lock").read_text())["stages"])


def test_too_few_images_to_split_fail_at_split(project, env, tmp_path):
    source = _photos(tmp_path / "photos", cats=2, dogs=2)
    run([CATDOG, "stage", "ingest", "-S", f"data.source={source}"], project, env)
    assert fails([CATDOG, "stage", "split"], project, env) == (
        "catdog: error: data/raw: too few distinct images to split (validation has no cat and "
        "no dog image; test has no cat and no dog image): usable images cat 2, dog 2, after "
        "dropping 0 exact copies and 0 images found under both labels; give data.source at "
        "least 3 distinct images of each class"
    )
    assert not (project / "data/split/manifest.csv").exists()
    assert _lock_stages(project) == ["ingest"]  # split is not recorded as done


def test_photos_filed_under_both_labels_fail_at_split(project, env, tmp_path):
    source = tmp_path / "photos"
    for i in range(2):
        for label in ("cat", "dog"):
            write_image(source / f"{label}.{i}.jpg", seed=i)  # the same picture, both labels
    run([CATDOG, "stage", "ingest", "-S", f"data.source={source}"], project, env)
    line = fails([CATDOG, "stage", "split"], project, env)
    assert "usable images cat 0, dog 0" in line and "4 images found under both labels" in line
    assert not (project / "data/split").exists()


def _git_commit_all(project: Path) -> None:
    run(["git", "add", "-A"], project)
    run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "ran"],
        project,
    )


def _git_status(project: Path) -> str:
    return run(["git", "status", "--porcelain"], project).stdout


RECOVERY = [  # the README's recovery after a failed run, through any door
    ["sh", "-c", "git show HEAD:params.yaml > params.yaml"],
    ["git", "checkout", "dvc.lock"],
    [str(bin_dir() / "dvc"), "checkout"],
]


def test_a_failed_ingest_keeps_the_last_good_report_and_names_its_own(ran_project, env, tmp_path):
    project = ran_project
    before = fingerprint(project)
    source = _photos(tmp_path / "photos", cats=3, dogs=1)
    (source / "dog.1.jpg").write_bytes(b"not a picture")
    line = fails([CATDOG, "stage", "ingest", "-S", f"data.source={source}"], project, env)
    assert line.startswith(
        f"catdog: error: data.source={source}: too few usable images (dog: 1; "
        "ingest.min_per_class=2; layout flat): .catdog/ingest-failed.md lists what was rejected"
    )
    report = yaml.safe_load((project / ".catdog/ingest-failed.json").read_text())
    assert [r["path"] for r in report["rejected"]] == ["dog.1.jpg"]
    assert "dog.1.jpg" in (project / ".catdog/ingest-failed.md").read_text()
    # What dvc.lock records is untouched: the last good ingest's data and reports; -S wrote
    # params.yaml, as it does through every door, and the README's recovery puts it back.
    assert fingerprint(project) == before | {"params.yaml": fingerprint(project)["params.yaml"]}
    for step in RECOVERY:
        run(step, project, env)
    assert fingerprint(project) == before and _git_status(project) == ""
    assert json.loads(run([str(bin_dir() / "dvc"), "status", "--json"], project, env).stdout) == {}


def test_a_failed_experiment_is_undone_by_the_readme_recovery(ran_project, env, tmp_path):
    project = ran_project
    before = fingerprint(project)
    cats_only = _photos(tmp_path / "cats", cats=3, dogs=0)
    for setting in (f"data.source={cats_only}", "data.source=/nonexistent"):
        failed = run(
            [str(bin_dir() / "dvc"), "exp", "run", "-S", setting], project, env, check=False
        )
        assert failed.returncode != 0, failed.stdout[-2000:]
        # DVC removes a stage's outputs before running it; none holds other bytes than before.
        after = fingerprint(project)
        assert set(after) <= set(before)
        assert {path for path in after if after[path] != before[path]} == {"params.yaml"}
        # DVC leaves its -S value in params.yaml, often written within the second git last
        # looked at the file at the same size, so `git status` and `git checkout` can miss it.
        for step in RECOVERY:
            run(step, project, env)
        assert fingerprint(project) == before, setting
        assert _git_status(project) == "", setting
        assert (
            json.loads(run([str(bin_dir() / "dvc"), "status", "--json"], project, env).stdout) == {}
        )


@pytest.mark.parametrize(
    ("command", "out", "kept"),
    [
        (["compare"], "NOTES.md", "git tracks"),
        (["compare"], "reports/comparison.md", "dvc.lock records as an output of evaluate"),
        (["score", "{photos}", "--model", "models/scratch.keras"], "params.yaml", "git tracks"),
        (["predict", "{photos}", "--model", "models/scratch.keras"], "dvc.yaml", "git tracks"),
    ],
)
def test_an_out_onto_a_file_the_project_keeps_is_refused_before_any_work(
    ran_project, env, tmp_path, command, out, kept
):
    project = ran_project
    (project / "NOTES.md").write_text("# Notes\n")
    _git_commit_all(project)
    before = fingerprint(project)
    photos = _photos(tmp_path / "photos", cats=2, dogs=2)
    argv = [word.format(photos=photos) for word in command]
    line = fails([CATDOG, *argv, "--out", out], project, env)
    suffixes = ".md or .html" if command == ["compare"] else ".csv"
    assert line == (
        f"catdog: error: --out {out}: would overwrite a file that {kept}; give a new file name "
        f"ending in {suffixes}"
    )
    assert fingerprint(project) == before


def test_ctrl_c_during_training_exits_130_in_one_line(project, env):
    run([CATDOG, "stage", "ingest"], project, env)
    run([CATDOG, "stage", "split"], project, env)
    process = subprocess.Popen(
        [CATDOG, "stage", "scratch", "-S", "scratch.epochs=500"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    history = project / "mlflow.db"
    deadline = time.monotonic() + 240
    while not training_started(history, "scratch"):  # an epoch was logged: training is under way
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err
    assert quiet(err), err[:3000]  # training imported TensorFlow
    assert err.strip().splitlines()[-1] == (
        "catdog: error: interrupted (Ctrl-C): the stage that was running is not recorded as "
        "done; run the same command again to carry on from it"
    )
    assert not (project / "models/scratch.keras").exists()
    assert _lock_stages(project) == ["ingest", "split"]


def test_params_edited_while_a_stage_trains_are_not_recorded_as_what_ran(project, env):
    run([CATDOG, "stage", "ingest"], project, env)  # the MLflow store exists before it is polled
    process = subprocess.Popen(
        [CATDOG, "run", "-S", "scratch.epochs=40"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 420
    while not training_started(project / "mlflow.db", "scratch"):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.5)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 40", "epochs: 2"))  # an edit meanwhile
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err[-3000:]
    assert "Traceback" not in out + err
    assert err.strip().splitlines()[-1] == (
        "catdog: error: params.yaml changed while the run was using it: scratch is not recorded "
        "in dvc.lock and nothing after it ran; run again to run with the new values"
    )
    assert "scratch" not in _lock_stages(project) and "evaluate" not in _lock_stages(project)
    status = json.loads(run([str(bin_dir() / "dvc"), "status", "--json"], project, env).stdout)
    assert "scratch" in status  # DVC sees the stage as not done for the values it now holds
