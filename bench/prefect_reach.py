"""What a stage process pays to reach Prefect, measured in one run: the project's server vs
Prefect's temporary one.

Each sample is a fresh Python process that does what ``catdog stage`` does before its work:
find the Prefect API (``catdog.servers.prefect.ensure_prefect_api``) and run one flow with one task.
  project server   the project's background server (started once, before the samples);
  temporary server no ``PREFECT_API_URL``: Prefect starts and stops a server in the process.
The first start of the project's server is reported apart. Prints medians and their ratio.

Run: .venv/bin/python bench/prefect_reach.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGE_LIKE = """
import os, sys
from pathlib import Path
if sys.argv[1] == "project":
    from catdog.servers.prefect import ensure_prefect_api
    os.environ["PREFECT_API_URL"] = ensure_prefect_api(Path(sys.argv[2]))
from prefect import flow, task

@task
def work():
    return 1

@flow(name="catdog-bench-reach")
def stage():
    return work()

stage()
"""


def sample(mode: str, home: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", STAGE_LIKE, mode, str(home)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="samples of each (default 5)")
    args = parser.parse_args()
    from catdog.servers.prefect import ensure_prefect_api, prefect_home, stop_prefect_server

    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    base.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    with tempfile.TemporaryDirectory(prefix="catdog-bench-reach-") as scratch:
        home = Path(scratch) / "project"
        os.environ.pop("PREFECT_API_URL", None)
        started = time.perf_counter()
        ensure_prefect_api(home)
        first_start = time.perf_counter() - started
        project_env = dict(base, PREFECT_HOME=str(prefect_home(home)))
        temporary_env = dict(base, PREFECT_HOME=str(Path(scratch) / "temporary-home"))
        try:
            times: dict[str, list[float]] = {"project": [], "temporary": []}
            for _ in range(args.runs):  # interleaved, so drift hits both alike
                times["project"].append(sample("project", home, project_env))
                times["temporary"].append(sample("temporary", home, temporary_env))
        finally:
            stop_prefect_server(home)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"project server, first start (once per checkout): {first_start:.1f} s")
    for mode, values in times.items():
        spread = f"min {min(values):.1f} max {max(values):.1f}"
        print(f"{mode:>9} server: median {medians[mode]:.1f} s per process ({spread})")
    print(f"temporary / project: {medians['temporary'] / medians['project']:.1f}x")


if __name__ == "__main__":
    main()
