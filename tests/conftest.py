"""Shared fixtures: quiet offline settings, tiny images, a temporary copy of the project."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.cli.main import QUIET_ENV

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = Path(
    os.environ.get("CATDOG_SHARED_PHOTOS", REPO.parent / "shared" / "data" / "dogs-vs-cats-2400")
)

for key, value in QUIET_ENV.items():  # the command line's quiet, offline settings
    os.environ.setdefault(key, value)

# The longest test files, longest first (from `pytest --durations`). pytest-xdist's loadfile
# hands files to its two workers in collection order (with --no-loadscope-reorder: by default it
# puts the files with most tests first, and one-test files like the platform's last), so these
# start first and the long platform test runs beside the rest instead of alone after it.
LONGEST_FIRST = (  # seconds per file on a clean clone, 2026-12-07, CPU shared
    "test_platform.py",  # 856
    "test_e2e.py",  # 802
    "test_failures.py",  # 593
    "test_faults.py",  # 558
    "test_deployments.py",  # 510 (2026-12-07, alone, -n0)
    "test_interruption.py",  # 504
    "test_sweep.py",  # 486
    "test_champion.py",  # 364
    "test_prefect_server.py",  # 174
    "test_storage_faults.py",  # 156
    "test_auth.py",  # 131
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep order


def write_image(
    path: Path,
    size: tuple[int, int] = (40, 30),
    mode: str = "RGB",
    fmt: str = "JPEG",
    seed: int = 0,
) -> Path:
    """A small random picture, saved in ``fmt`` (whatever the suffix says)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def flat_folder(tmp_path: Path) -> Path:
    """Six cats and six dogs in Kaggle's flat layout, all distinct."""
    folder = tmp_path / "photos"
    for i in range(6):
        write_image(folder / f"cat.{i}.jpg", seed=i)
        write_image(folder / f"dog.{i}.jpg", seed=100 + i)
    return folder


# What an end-to-end copy of the project needs (no data, no state, no environment).
PROJECT_FILES = (
    "pyproject.toml",
    "params.yaml",
    "dvc.yaml",
    "prefect.yaml",
    ".dvcignore",
    "catdog",
    "tasks",
    "flows",
)

TINY_PARAMS = {
    "data.synthetic.per_class": 12,
    "data.image_size": 80,
    "augment.views": 1,
    "features.weights": "auto",  # OFFLINE, empty KERAS_HOME: untrained, with a warning
    "classifier.epochs": 2,
    "finetune.epochs": 1,
    "scratch.epochs": 1,
}


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 now (for a server the test starts, or none)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_dir() -> Path:
    """The folder of the running interpreter's scripts (catdog, dvc)."""
    return Path(sys.executable).parent


#: The project's commands run as if offline, whatever the machine can reach: HTTPS (the ImageNet
#: download of ``features.weights: auto``) goes to a port nobody listens on, so ``auto`` always
#: means the untrained conv base the tests expect; the local servers are plain HTTP on loopback.
#: Loopback stays direct: Prefect's event websocket would otherwise go to the closed port too.
OFFLINE = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.pop("DVC_ROOT", None)
    env.update(OFFLINE)
    env.update(extra or {})
    return env


def run(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: int = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, cwd=cwd, env=env or project_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode})\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def lock_outs(workspace: Path) -> dict[str, dict[str, str]]:
    """What dvc.lock records each stage made: stage -> {output path: DVC hash}."""
    import yaml

    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    return {
        name: {out["path"]: out["md5"] for out in stage.get("outs", [])}
        for name, stage in lock["stages"].items()
    }


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text``, stripped of their padding."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not set(line) <= set("|:- ")
    ]


CHROMIUM = Path(os.environ.get("CATDOG_CHROMIUM", "/usr/bin/chromium"))
# Offline: without these, Chromium keeps dialling Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("CATDOG_SCREENSHOTS", REPO / ".catdog" / "screenshots"))


@contextlib.contextmanager
def chromium(**context: object) -> Iterator[object]:
    """A real headless Chromium (Debian's, driven by Playwright): yields a browser context."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_context(**{"viewport": {"width": 1500, "height": 1000}, **context})
        finally:
            browser.close()


def training_started(store: Path, stage: str) -> bool:
    """True once the stage's MLflow run in the SQLite ``store`` has logged an epoch.

    It reads the store with SQL, read-only: an MLflow client would migrate a store the run is
    still creating, and the two migrations collide.
    """
    import sqlite3

    if not store.exists():
        return False
    query = (
        "SELECT 1 FROM metrics m JOIN tags t ON m.run_uuid = t.run_uuid "
        "WHERE t.key = 'catdog.stage' AND t.value = ? AND m.key = 'loss' LIMIT 1"
    )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return db.execute(query, (stage,)).fetchone() is not None
    except sqlite3.OperationalError:  # tables not made yet, or the store busy
        return False


def make_project_copy(
    dest: Path, params: dict[str, object] | None = None, *, tiny: bool = True
) -> Path:
    """A fresh git + DVC repository holding the project's code and (by default) tiny params."""
    from catdog.workspace.params_file import apply_params

    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    shutil.copytree(
        REPO / ".dvc", dest / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local")
    )
    base = TINY_PARAMS if tiny else {}
    apply_params(dest, overrides=[f"{k}={v}" for k, v in {**base, **(params or {})}.items()])
    (dest / ".gitignore").write_text((REPO / ".gitignore").read_text())
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"],
        dest,
    )
    return dest


@pytest.fixture(scope="session")
def prefect_server_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """The home of one real Prefect server (on 127.0.0.1) for every end-to-end test of the
    session (None when ``PREFECT_API_URL`` names one already)."""
    from catdog.servers.prefect import prefect_home, stop_prefect_server

    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    home = tmp_path_factory.mktemp("prefect-server")
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(prefect_home(home))
    try:
        yield home
    finally:
        stop_prefect_server(home)
        if previous is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = previous


@pytest.fixture(scope="session")
def prefect_api(prefect_server_home: Path | None) -> str:
    """The shared server's API."""
    from catdog.servers.prefect import ensure_prefect_api

    if prefect_server_home is None:
        return os.environ["PREFECT_API_URL"]
    return ensure_prefect_api(prefect_server_home)


@pytest.fixture
def e2e_env(prefect_api: str, prefect_server_home: Path | None, tmp_path: Path) -> dict[str, str]:
    """Environment for the project's commands: the shared Prefect server, an empty Keras cache.

    A shared server that died since the last test is started again, as the next `catdog`
    command would start a project's own, and the test run warns about it with the end of the
    server's log, which says what it died of unless it was killed.
    """
    import warnings

    from catdog.servers.health import is_healthy
    from catdog.servers.prefect import ensure_prefect_api, log_tail, prefect_home

    api = prefect_api
    if prefect_server_home is not None and not is_healthy(f"{api}/health"):
        pid = prefect_home(prefect_server_home) / "server.pid"
        server, said = pid.read_text() if pid.exists() else "", log_tail(prefect_server_home, 20)
        api = ensure_prefect_api(prefect_server_home)  # waits for one that is only busy
        if pid.read_text() != server:
            died = f"the shared Prefect server at {prefect_api} had died; started at {api}"
            warnings.warn(f"{died}; its log: {said}", stacklevel=2)
    return project_env(
        {
            "PREFECT_API_URL": api,
            "PREFECT_HOME": os.environ["PREFECT_HOME"],
            "KERAS_HOME": str(tmp_path / "keras-home"),
        }
    )


def tiny_image_model(path: Path, weight: float, centre: float = 0.5) -> Path:
    """A 32 px model of brightness, saved at ``path``: raw RGB pixels in, sigmoid of (mean
    brightness - ``centre``) times 3 ``weight`` out. On dark cats and bright dogs a positive
    weight is always right, a negative one always wrong; ``centre`` 0.833 with a positive weight
    calls a dog of level 210 a cat."""
    import keras  # TensorFlow: only the tests that build a model pay for it

    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.Constant(weight),
        bias_initializer=keras.initializers.Constant(-3 * centre * weight),  # 3 channels summed
    )(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(path)
    return path
