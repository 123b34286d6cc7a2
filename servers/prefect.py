"""A shared local Prefect server for the pipeline's stage processes.

With no ``PREFECT_API_URL``, every process that runs a Prefect flow starts (and stops) its
own temporary server, which costs several seconds per process. :func:`ensure_prefect_api`
instead starts one server on demand, records it in ``state_dir``, and hands the same API URL
to every later caller. The server is run by a small detached supervisor process
(``python -m servers.prefect supervise``) that stops it once it has been idle for
``idle_timeout_s``, so nothing is left running after the pipeline.

Files in ``state_dir``:

* ``prefect-server.json``: the running server (url, supervisor pid, server pid, port,
  started_at, ...), written atomically once the server answers its health check.
* ``prefect-server.lease``: its mtime is renewed by every :func:`ensure_prefect_api` call.
* ``prefect-server.holders/``: one file per process that asked to hold the server; the
  server is never stopped for idleness while such a process is alive.
* ``prefect-server.lock``: ``flock``-ed while a caller checks or starts the server.
* ``prefect-server.log``: output of the supervisor and the server (previous one in ``.1``).

Idle rule: the server is stopped once no holder is alive and neither the lease nor the
last holder has been seen for ``idle_timeout_s`` (the value given by the caller that
started it). POSIX only (``fcntl``, process groups).

Important for callers: Prefect reads its settings when ``prefect`` is first imported, so set
``os.environ["PREFECT_API_URL"]`` to the returned URL *before* importing ``prefect`` (this
module does not import it), or run the flows inside
``prefect.settings.temporary_settings({PREFECT_API_URL: url})``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STATE_FILE = "prefect-server.json"
LEASE_FILE = "prefect-server.lease"
LOCK_FILE = "prefect-server.lock"
LOG_FILE = "prefect-server.log"
HOLDERS_DIR = "prefect-server.holders"

#: Options for ``prefect server start``: no UI, no analytics, and no scheduler / late-runs
#: services (they only act on deployments, which the pipeline does not use). The other
#: services stay on, in particular the task-run recorder: with ``--no-services`` task runs
#: would not be recorded at all.
SERVER_OPTIONS: tuple[str, ...] = ("--no-ui", "--analytics-off", "--no-scheduler", "--no-late-runs")
#: Environment given to the server on top of the caller's own.
SERVER_ENV: dict[str, str] = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

STOP_GRACE_S = 10.0  # SIGTERM -> SIGKILL
_SUPERVISOR_TICK_S = 0.25
_CALLER_POLL_S = 0.1
_HEALTH_TIMEOUT_S = 5.0
_HEALTH_RETRIES = 3  # for a recorded server whose processes are alive but did not answer
_START_ATTEMPTS = 3  # the free port may be taken between choosing it and binding it
_SUPERVISOR_TAG = ("servers.prefect", "supervise")
_SERVER_TAG = ("prefect", "server", "start")


@dataclass(frozen=True)
class _Paths:
    """The files of one state directory."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def lease(self) -> Path:
        return self.root / LEASE_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def holders(self) -> Path:
        return self.root / HOLDERS_DIR


# Supervisors this process started: kept so that they can be reaped, not left as zombies.
_SPAWNED: list[subprocess.Popen[bytes]] = []


# ----------------------------------------------------------------------------- public API


def ensure_prefect_api(
    state_dir: Path,
    *,
    idle_timeout_s: float = 600.0,
    start_timeout_s: float = 90.0,
    hold: bool = True,
) -> str:
    """Return a Prefect API URL to use, starting a shared local server if needed.

    If ``PREFECT_API_URL`` is set in the environment, it is returned unchanged and no server
    is started. Otherwise the server recorded in ``state_dir/prefect-server.json`` is reused
    if it answers its health check (``GET <api>/health``), renewing its lease; if there is
    none, or it is stale (dead process, not answering), a new one is started and awaited.
    Concurrent callers are serialized with an exclusive ``flock``, so they share one server.

    The caller then sets ``os.environ["PREFECT_API_URL"]`` to the result before running
    flows; this must happen before ``prefect`` is imported, as Prefect reads its settings at
    import time.

    Args:
        state_dir: Directory for the state, lease, lock and log files (created if missing).
        idle_timeout_s: Seconds without use after which the server stops itself. Only the
            value of the call that starts the server counts.
        start_timeout_s: Seconds to wait for a new server to answer its health check.
        hold: Also keep the server running for as long as the calling process lives, so a
            flow that runs longer than ``idle_timeout_s`` keeps its server. The idle
            countdown then starts when the last holding process has exited.

    Returns:
        The API URL, e.g. ``http://127.0.0.1:8123/api``.

    Raises:
        RuntimeError: If a new server did not become healthy within ``start_timeout_s``.
        TimeoutError: If the state directory stayed locked by another caller for too long.
    """
    url = os.environ.get("PREFECT_API_URL")
    if url:
        logger.debug("PREFECT_API_URL is set; using %s", url)
        return url

    paths = _Paths(Path(state_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    _reap_spawned()
    with _locked(paths.lock, timeout_s=start_timeout_s + 2 * STOP_GRACE_S + 30.0):
        state = _read_state(paths.state)
        if state is not None:
            if _is_usable(state):
                _renew(paths, hold=hold)
                _warn_if_other_home(state)
                logger.debug("Reusing Prefect server %s", state["url"])
                return str(state["url"])
            logger.info("Replacing stale Prefect server record %s", paths.state)
            _discard(paths, state)
        url = _start_server(paths, idle_timeout_s=idle_timeout_s, start_timeout_s=start_timeout_s)
        _renew(paths, hold=hold)
        return url


def stop_prefect_server(state_dir: Path) -> bool:
    """Stop the server recorded in ``state_dir``, if any, and remove its record.

    The supervisor is sent SIGTERM (it stops the server: SIGTERM, then SIGKILL after a grace
    period); if it does not exit in time, both are killed.

    Args:
        state_dir: The directory given to :func:`ensure_prefect_api`.

    Returns:
        True if a running supervisor or server was stopped, False if there was none.
    """
    paths = _Paths(Path(state_dir))
    if not paths.root.is_dir():
        return False
    with _locked(paths.lock, timeout_s=60.0):
        state = _read_state(paths.state)
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()
        _clear_holders(paths)
    stopped = _terminate_recorded(state) if state is not None else False
    _reap_spawned()
    if stopped:
        logger.info("Stopped Prefect server %s", state.get("url") if state else None)
    return stopped


# ----------------------------------------------------------------------------- caller side


def _is_usable(state: dict[str, Any]) -> bool:
    """Whether a recorded server is alive and answers its health check."""
    url = state.get("url")
    if not isinstance(url, str):
        return False
    if _find_process(state.get("pid"), _SUPERVISOR_TAG) is None:
        return False
    if _find_process(state.get("server_pid"), _SERVER_TAG) is None:
        return False
    # Both processes are alive: give a busy server a few chances before replacing it.
    for attempt in range(_HEALTH_RETRIES):
        if _healthy(url, timeout_s=_HEALTH_TIMEOUT_S):
            return True
        if attempt + 1 < _HEALTH_RETRIES:
            time.sleep(1.0)
    logger.warning("Recorded Prefect server %s is running but does not answer", url)
    return False


def _start_server(paths: _Paths, *, idle_timeout_s: float, start_timeout_s: float) -> str:
    """Spawn a supervisor and wait until it has recorded a healthy server (lock held)."""
    _clear_holders(paths)
    _rotate_log(paths.log)
    _touch(paths.lease)  # a fresh lease, so the new server does not start out idle
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    cmd = [
        sys.executable,
        "-m",
        "servers.prefect",
        "supervise",
        "--state-dir",
        str(paths.root.resolve()),
        "--idle-timeout",
        str(idle_timeout_s),
        "--start-timeout",
        str(start_timeout_s),
    ]
    t0 = time.monotonic()
    with paths.log.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    _SPAWNED.append(proc)
    logger.info("Starting a shared Prefect server (supervisor pid %d)", proc.pid)

    deadline = t0 + start_timeout_s
    while True:
        state = _read_state(paths.state)
        if state is not None and state.get("pid") == proc.pid:
            url = str(state["url"])
            if _healthy(url, timeout_s=_HEALTH_TIMEOUT_S):
                logger.info("Prefect server %s ready in %.1f s", url, time.monotonic() - t0)
                return url
        code = proc.poll()
        if code is not None:
            raise RuntimeError(
                _start_failure(
                    paths,
                    f"the supervisor exited with code {code} before the "
                    "Prefect server became healthy",
                )
            )
        if time.monotonic() > deadline:
            _remove_state_if_owned(paths, proc.pid)
            _terminate(proc.pid, _SUPERVISOR_TAG, grace_s=STOP_GRACE_S + 5.0)
            if state is not None and state.get("pid") == proc.pid:
                _terminate(state.get("server_pid"), _SERVER_TAG, grace_s=STOP_GRACE_S)
            raise RuntimeError(
                _start_failure(
                    paths,
                    f"the Prefect server did not become healthy within {start_timeout_s:g} s",
                )
            )
        time.sleep(_CALLER_POLL_S)


def _start_failure(paths: _Paths, what: str) -> str:
    """Build the RuntimeError message for a server that failed to start."""
    return (
        f"Could not start a shared Prefect server: {what}. Last lines of {paths.log}:\n"
        f"{_log_tail(paths.log)}\n"
        "To work around it, start a Prefect server yourself (`prefect server start`) and "
        "set PREFECT_API_URL to its API (e.g. http://127.0.0.1:4200/api), or raise "
        "start_timeout_s on a slow machine."
    )


def _renew(paths: _Paths, *, hold: bool) -> None:
    """Renew the lease and, if asked, register this process as a holder (lock held)."""
    _touch(paths.lease)
    if hold:
        paths.holders.mkdir(exist_ok=True)
        me = psutil.Process()
        (paths.holders / str(me.pid)).write_text(repr(me.create_time()), encoding="utf-8")


def _discard(paths: _Paths, state: dict[str, Any]) -> None:
    """Stop whatever is left of a stale recorded server and remove its record (lock held)."""
    with contextlib.suppress(FileNotFoundError):
        paths.state.unlink()  # first, so its supervisor need not wait for our lock
    _clear_holders(paths)
    _terminate_recorded(state)


def _terminate_recorded(state: dict[str, Any]) -> bool:
    """Stop a recorded supervisor and its server; True if either was running."""
    stopped = _terminate(state.get("pid"), _SUPERVISOR_TAG, grace_s=STOP_GRACE_S + 5.0)
    # The supervisor stops its server; this only catches a server left without supervisor.
    stopped |= _terminate(state.get("server_pid"), _SERVER_TAG, grace_s=STOP_GRACE_S)
    return stopped


def _warn_if_other_home(state: dict[str, Any]) -> None:
    """Warn when the shared server uses another PREFECT_HOME than this caller."""
    if state.get("prefect_home") != os.environ.get("PREFECT_HOME"):
        logger.warning(
            "The shared Prefect server was started with PREFECT_HOME=%s, this process has "
            "PREFECT_HOME=%s; runs go to the server's database",
            state.get("prefect_home"),
            os.environ.get("PREFECT_HOME"),
        )


def _reap_spawned() -> None:
    """Reap supervisors this process started that have exited."""
    _SPAWNED[:] = [p for p in _SPAWNED if p.poll() is None]


# ----------------------------------------------------------------------------- supervisor


class _Supervisor:
    """Runs ``prefect server start`` as a child and stops it when idle."""

    def __init__(self, state_dir: Path, idle_timeout_s: float, start_timeout_s: float) -> None:
        self.paths = _Paths(state_dir)
        self.idle_timeout_s = idle_timeout_s
        self.start_timeout_s = start_timeout_s
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_reason: str | None = None
        self.pid = os.getpid()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_reason = f"signal {signal.Signals(signum).name}"

    def run(self) -> int:
        """Start the server, watch it, stop it; return the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            url = self._start()
            if url is None:
                return 1
            self._watch()
            return 0
        finally:
            self._stop_child()
            self._remove_state()
            logger.info("Supervisor exiting (%s)", self.stop_reason)

    def _start(self) -> str | None:
        """Start the server and record it once healthy; None if that failed."""
        deadline = time.monotonic() + self.start_timeout_s
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            url = f"http://{HOST}:{port}/api"
            cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST]
            cmd += ["--port", str(port), *SERVER_OPTIONS]
            logger.info("Starting %s", " ".join(cmd))
            self.child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **SERVER_ENV},
                start_new_session=True,  # its own process group, stopped as a whole
                preexec_fn=_die_with_parent_hook(),  # the supervisor is single-threaded
            )
            while self.stop_reason is None and time.monotonic() < deadline:
                if self.child.poll() is not None:
                    break
                if _healthy(url, timeout_s=2.0):
                    self._record(url, port)
                    return url
                time.sleep(_SUPERVISOR_TICK_S)
            if self.stop_reason is not None:
                return None
            code = self.child.poll()
            if code is None:
                self.stop_reason = f"not healthy within {self.start_timeout_s:g} s"
                return None
            if _port_in_use(port) and attempt < _START_ATTEMPTS:
                logger.warning("Port %d was taken meanwhile; retrying on another port", port)
                continue
            self.stop_reason = f"server exited with code {code} during startup"
            return None
        return None

    def _record(self, url: str, port: int) -> None:
        assert self.child is not None
        state = {
            "url": url,
            "pid": self.pid,
            "server_pid": self.child.pid,
            "port": port,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "idle_timeout_s": self.idle_timeout_s,
            "prefect_home": os.environ.get("PREFECT_HOME"),
            "python": sys.executable,
        }
        _write_json_atomic(self.paths.state, state)
        logger.info("Prefect server %s healthy (pid %d)", url, self.child.pid)

    def _watch(self) -> None:
        """Return once stopped by a signal, by the server's death, or for idleness."""
        assert self.child is not None
        last_busy = time.time()
        while self.stop_reason is None:
            code = self.child.poll()
            if code is not None:
                self.stop_reason = f"server exited with code {code}"
                return
            if not self.paths.root.is_dir():
                self.stop_reason = "state directory removed"
                return
            idle_s = self._idle_seconds(last_busy)
            if idle_s is None:
                last_busy = time.time()
            elif idle_s >= self.idle_timeout_s:
                try:
                    with _locked(self.paths.lock, timeout_s=0.0):
                        # Re-check under the lock: a caller may just have renewed it.
                        idle_s = self._idle_seconds(last_busy)
                        if idle_s is not None and idle_s >= self.idle_timeout_s:
                            _remove_state_if_owned(self.paths, self.pid)
                            self.stop_reason = f"idle for {idle_s:.0f} s"
                            return
                except TimeoutError:
                    pass  # a caller holds the lock, and will renew the lease
            time.sleep(_SUPERVISOR_TICK_S)

    def _idle_seconds(self, last_busy: float) -> float | None:
        """Seconds since last use, or None while a holding process is alive."""
        if _live_holders(self.paths):
            return None
        try:
            lease = self.paths.lease.stat().st_mtime
        except FileNotFoundError:
            lease = 0.0
        return time.time() - max(lease, last_busy)

    def _stop_child(self) -> None:
        child = self.child
        if child is None:
            return
        if child.poll() is None:
            logger.info("Stopping Prefect server (pid %d)", child.pid)
            _signal_group(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                logger.warning("Prefect server ignored SIGTERM; killing it")
                _signal_group(child.pid, signal.SIGKILL)
                child.wait()
        _signal_group(child.pid, signal.SIGKILL)  # any leftovers of its process group

    def _remove_state(self) -> None:
        state = _read_state(self.paths.state)
        if state is None or state.get("pid") != self.pid:
            return  # not (or no longer) ours: nothing to do, and no need for the lock
        try:
            with _locked(self.paths.lock, timeout_s=5.0):
                _remove_state_if_owned(self.paths, self.pid)
        except TimeoutError:
            _remove_state_if_owned(self.paths, self.pid)


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM if the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return hook


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _locked(path: Path, *, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; raise TimeoutError after ``timeout_s``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout_s:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_state(path: Path) -> dict[str, Any] | None:
    """The recorded server, or None if there is no (readable) record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temporary file and os.replace."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_state_if_owned(paths: _Paths, pid: int) -> None:
    """Remove the state file if it records supervisor ``pid``."""
    state = _read_state(paths.state)
    if state is not None and state.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()


def _healthy(api_url: str, *, timeout_s: float) -> bool:
    """Whether ``GET <api_url>/health`` answers ``true``."""
    try:
        response = httpx.get(f"{api_url}/health", timeout=timeout_s)
        return response.status_code == 200 and response.json() is True
    except (httpx.HTTPError, ValueError):
        return False


def _find_process(pid: object, tag: Sequence[str]) -> psutil.Process | None:
    """The live, non-zombie process ``pid`` whose command line contains all of ``tag``."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return proc if all(part in cmdline for part in tag) else None


def _terminate(pid: object, tag: Sequence[str], *, grace_s: float) -> bool:
    """SIGTERM, then SIGKILL after ``grace_s``, a process matching ``tag``; True if running."""
    proc = _find_process(pid, tag)
    if proc is None:
        return False
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=grace_s)
        if alive:
            logger.warning("Process %d ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            psutil.wait_procs([proc], timeout=5.0)
    _reap_spawned()
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _live_holders(paths: _Paths) -> int:
    """Count holder processes still alive, removing the records of dead ones."""
    try:
        entries = list(paths.holders.iterdir())
    except FileNotFoundError:
        return 0
    alive = 0
    for entry in entries:
        try:
            pid = int(entry.name)
            created = float(entry.read_text(encoding="utf-8"))
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - created) < 1:
                alive += 1
                continue
        except (ValueError, OSError, psutil.Error):
            pass
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
    return alive


def _clear_holders(paths: _Paths) -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in paths.holders.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def _touch(path: Path) -> None:
    path.touch()
    os.utime(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def _rotate_log(path: Path) -> None:
    if path.exists():
        os.replace(path, path.with_name(path.name + ".1"))


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``ensure`` (print the URL), ``stop``, and the internal ``supervise``.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m servers.prefect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("ensure", "print the API URL of the shared server, starting it if needed"),
        ("stop", "stop the shared server"),
        ("supervise", "internal: run and watch the server"),
    ]:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--state-dir", type=Path, required=True)
        if name != "stop":
            cmd.add_argument("--idle-timeout", type=float, default=600.0)
            cmd.add_argument("--start-timeout", type=float, default=90.0)
    args = parser.parse_args(argv)

    if args.command == "supervise":
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s | %(levelname)-7s | prefect-server supervisor %(process)d | "
            "%(message)s",
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll
        return _Supervisor(args.state_dir, args.idle_timeout, args.start_timeout).run()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "ensure":
        url = ensure_prefect_api(
            args.state_dir,
            idle_timeout_s=args.idle_timeout,
            start_timeout_s=args.start_timeout,
            hold=False,  # this process exits at once; the lease keeps the server up
        )
        sys.stdout.write(url + "\n")
        return 0
    stopped = stop_prefect_server(args.state_dir)
    sys.stdout.write(("stopped" if stopped else "no server running") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
