"""The default pipeline's wall time by stage, and what orchestration adds, measured in one run.

Three runs of the same pipeline on the same params, each in a fresh copy of the project:
  plain      every stage's task function called directly, one process, no Prefect, no MLflow;
  catdog run one process, one Prefect flow run (task run per stage) and MLflow runs;
  dvc repro  eight processes (one per stage), each a Prefect flow and an MLflow child run.
A shared Prefect server is started before the timed runs (its one-off start is reported apart).

Run: .venv/bin/python bench/pipeline.py [-S key=value ...]
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.conftest import make_project_copy, project_env  # noqa: E402


def plain(project: Path) -> dict[str, float]:
    """Each stage's task function, in this process, on the copy's params.yaml."""
    from catdog.params import load_params
    from catdog.stage_table import STAGES

    params = load_params(project / "params.yaml")
    times = {}
    for row in STAGES:
        module, function = row.task
        task = getattr(importlib.import_module(module), function)
        started = time.perf_counter()
        task.fn(project, **row.task_arguments(params))
        times[row.name] = time.perf_counter() - started
    return times


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    from catdog.servers.prefect import ensure_prefect_api, prefect_home, stop_prefect_server

    params = dict(o.split("=", 1) for o in args.overrides)
    with tempfile.TemporaryDirectory(prefix="catdog-bench-pipeline-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        env_vars = dict(os.environ, PREFECT_HOME=str(prefect_home(root / "state")))
        os.environ.update(env_vars)
        url = ensure_prefect_api(root / "state")
        server_s = time.perf_counter() - started
        env = project_env(
            {
                "PREFECT_API_URL": url,
                "PREFECT_HOME": env_vars["PREFECT_HOME"],
                "KERAS_HOME": str(root / "keras"),
            }
        )
        try:
            os.environ["KERAS_HOME"] = str(root / "keras")
            stages = plain(make_project_copy(root / "plain", params, tiny=False))
            plain_s = sum(stages.values())
            run_s = timed(
                [str(Path(sys.executable).parent / "catdog"), "run"],
                make_project_copy(root / "run", params, tiny=False),
                env,
            )
            repro_s = timed(
                [str(Path(sys.executable).parent / "dvc"), "repro"],
                make_project_copy(root / "repro", params, tiny=False),
                env,
            )
        finally:
            stop_prefect_server(root / "state")
    print("stage wall time, plain task functions in one process:")
    for name, seconds in stages.items():
        print(f"  {name:<11} {seconds:6.1f} s  {100 * seconds / plain_s:5.1f}%")
    print(f"  {'total':<11} {plain_s:6.1f} s")
    print(
        f"catdog run (1 process, Prefect + MLflow): {run_s:6.1f} s = {run_s / plain_s:.2f}x plain"
        f" (+{100 * (run_s - plain_s) / plain_s:.0f}%)"
    )
    print(
        f"dvc repro (8 processes, Prefect + MLflow): {repro_s:6.1f} s = {repro_s / plain_s:.2f}x"
        f" plain (+{100 * (repro_s - plain_s) / plain_s:.0f}%)"
    )
    print(f"one-off shared Prefect server start: {server_s:.1f} s (not in the totals)")


if __name__ == "__main__":
    main()
