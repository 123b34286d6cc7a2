"""A sweep at a tiny size: two experiments queued in DVC, run by its queue worker, then ranked by
`catdog compare` on the same test images."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from catdog.tracking.ranking import NOT_COMPARABLE
from tests.conftest import bin_dir, make_project_copy, run, table_rows

pytestmark = pytest.mark.e2e

DVC = str(bin_dir() / "dvc")
CATDOG = str(bin_dir() / "catdog")
SWEEP = {"sweep-1": 1, "sweep-2": 2}  # experiment name -> scratch.epochs
QUEUE_TIMEOUT_S = 900


def wait_for_queue(project: Path, env: dict[str, str]) -> str:
    """`dvc queue status` once no experiment is queued or running (bounded by the timeout)."""
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while True:
        status = run([DVC, "queue", "status"], project, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        if time.monotonic() > deadline:
            run([DVC, "queue", "stop", "--kill"], project, env, check=False)
            pytest.fail(f"the queue did not finish in {QUEUE_TIMEOUT_S} s:\n{status}")
        time.sleep(3)


def test_a_queued_sweep_is_ranked_by_catdog_compare(tmp_path: Path, e2e_env: dict[str, str]):
    # the worker runs each experiment in a copy of the last commit plus the queued params
    project = make_project_copy(tmp_path / "catdog")
    for name, epochs in SWEEP.items():
        queue = [DVC, "exp", "run", "--queue", "-n", name, "-S", f"scratch.epochs={epochs}"]
        run(queue, project, e2e_env)
    # the worker it starts outlives it and would hold captured pipes open: no capture
    subprocess.run(
        [DVC, "queue", "start"],
        cwd=project,
        env=e2e_env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = wait_for_queue(project, e2e_env)
    for name in SWEEP:
        finished = [line for line in status.splitlines() if name in line]
        if not finished or "Success" not in finished[0]:
            logs = run([DVC, "queue", "logs", name], project, e2e_env, check=False)
            pytest.fail(f"{name} did not succeed:\n{status}\n{logs.stdout[-6000:]}")

    run([CATDOG, "compare", "--out", "sweep.md"], project, e2e_env)
    report = (project / "sweep.md").read_text()
    assert report.startswith("# catdog: 2 pipeline executions compared")
    rows = table_rows(report)
    for name in SWEEP:  # the executions table names each experiment
        assert any(name in row for row in rows), name
    scratch = [row for row in rows if len(row) > 3 and row[1] == "scratch"]
    assert len(scratch) == 2 and all("% [" in row[3] for row in scratch)  # accuracy [interval]
    ranking = report.split("## Ranking of scratch (paired on the same test images)")[1]
    ranked = table_rows(ranking.split("\n## ")[0])[1:]
    assert [row[1] for row in ranked] == ["1", "2"]
    # the same split (same params, same data): paired, with a verdict either way
    assert ranked[1][-1] != NOT_COMPARABLE and "p = " in ranked[1][-1]
