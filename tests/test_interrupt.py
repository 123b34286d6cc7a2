"""Ctrl-C ends a catdog command in one line, even when a library swallows the interrupt."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from catdog.cli.main import INTERRUPTED
from tests.conftest import REPO

SWALLOWS_CTRL_C = textwrap.dedent(
    """
    import time
    import catdog.cli.main as cli

    cli.INTERRUPT_GRACE_S = 1.0
    with cli._interrupt_ends_the_process():
        deadline, announced = time.monotonic() + 60, False
        while True:  # what a retry loop around a network call may do
            try:  # "ready" too: the interrupt is swallowed wherever it lands, even at once
                if not announced:
                    announced = True
                    print("ready", flush=True)
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                break
            except KeyboardInterrupt:
                pass
    print("still running", flush=True)
    """
)


def test_ctrl_c_ends_the_process_even_when_a_library_swallows_it():
    process = subprocess.Popen(
        [sys.executable, "-c", SWALLOWS_CTRL_C],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "still running" not in out
    assert err.strip().splitlines() == [f"catdog: error: {INTERRUPTED}"]
