"""How soon a run that cannot go on says so, against what any stage pays to start.

Run: .venv/bin/python bench/faults.py
Measures once each, in this run, in a temporary copy of the project:

* start-up: a process importing what a stage imports (catdog's command line, MLflow, Prefect),
  the faster of two;
* a stage whose MLflow tracking server is down (``MLFLOW_TRACKING_URI`` at a port nobody
  listens on): seconds to its one ``catdog: error:`` line, exit 2;
* a stage started while another run holds the workspace: seconds to its refusal, exit 2.

Prints each figure and its ratio to the start-up. Goal: each refusal within 3x the start-up,
i.e. a probe or a look at the workspace record, no retries and no waiting for the other run.
The tests check the refusals themselves (tests/test_faults.py, tests/test_interruption.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from catdog.workspace.lock import hold_workspace  # noqa: E402
from tests.conftest import free_port, make_project_copy, project_env  # noqa: E402


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str, int]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - started, done.stderr.strip(), done.returncode


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="catdog-bench-faults-") as tmp:
        project = make_project_copy(Path(tmp) / "catdog")
        env = project_env()
        stage = [sys.executable, "-m", "catdog.cli", "stage"]
        imports = "import catdog.cli.commands, mlflow, prefect"
        startup = min(timed([sys.executable, "-c", imports], project, env)[0] for _ in range(2))
        dead = dict(env, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
        down_s, down_err, down_rc = timed([*stage, "ingest"], project, dead)
        with hold_workspace(project, "bench/faults.py"):
            busy_s, busy_err, busy_rc = timed([*stage, "split"], project, env)
    print(f"start-up (imports of a stage):        {startup:5.1f} s")
    for name, seconds, err, code in (
        ("tracking server down at start", down_s, down_err, down_rc),
        ("workspace held by another run", busy_s, busy_err, busy_rc),
    ):
        line = err.splitlines()[-1] if err else "(nothing on stderr)"
        print(f"{name + ':':37} {seconds:5.1f} s = {seconds / startup:.1f}x start-up (goal <= 3x)")
        print(f"    exit {code}: {line[:150]}")


if __name__ == "__main__":
    main()
