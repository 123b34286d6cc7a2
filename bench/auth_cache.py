"""What MLflow's basic-auth costs a tracking client, measured in one run: `catdog serve --auth`'s
MLflow server with its cache of password checks (``auth_cache_ttl_seconds``) against without it.

Two real MLflow servers as `catdog serve --auth` starts them (``catdog.servers.serve``), one with
the cache on and one with it off, same admin account and password.
A client logs metrics the way a training stage does (one ``log_metric`` request per call), in
alternating blocks against the two servers. Prints the median requests per second of each, and
their ratio, and writes them as JSON.

Run: .venv/bin/python bench/auth_cache.py [--requests 100] [--blocks 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ADMIN = "admin"

if TYPE_CHECKING:
    from catdog.servers.serve import Service


def start(home: Path, cache_ttl_s: int, password: str) -> Service:
    """`catdog serve --auth`'s MLflow server for ``home``, its password cache set as given."""
    from catdog.servers.auth import ServerCredentials
    from catdog.servers.health import is_healthy
    from catdog.servers.prefect import free_loopback_port
    from catdog.servers.serve import ServeOptions, _mlflow_service, auth_config

    options = ServeOptions(mlflow_port=free_loopback_port(), auth=True)
    server = _mlflow_service(home, options, ServerCredentials(ADMIN, password, ""))
    auth_config(home, ADMIN, cache_ttl_s)  # the file the server reads, with this cache setting
    server.start()
    deadline = time.monotonic() + 180
    while not is_healthy(server.health_url):
        if not server.alive() or time.monotonic() > deadline:
            raise SystemExit(f"the MLflow server did not start:\n{server.log_tail()}")
        time.sleep(1)
    return server


def block(client: object, run_id: str, requests: int, offset: int) -> float:
    """Requests per second over ``requests`` authenticated ``log_metric`` calls."""
    started = time.perf_counter()
    for step in range(offset, offset + requests):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks per server, alternating")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    from catdog.servers.serve import AUTH_CACHE_TTL_S

    password = secrets.token_urlsafe(16)
    os.environ.update(MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=password)
    with tempfile.TemporaryDirectory(prefix="catdog-auth-") as tmp:
        servers, rates = {}, {}
        try:
            for name, ttl in (("cache off", 0), ("cache on", AUTH_CACHE_TTL_S)):
                home = Path(tmp) / name.replace(" ", "-")
                home.mkdir()
                servers[name] = start(home, ttl, password)
            clients = {}
            for name, server in servers.items():
                client = MlflowClient(server.url)
                experiment = client.create_experiment("bench")
                clients[name] = (client, client.create_run(experiment).info.run_id)
                block(client, clients[name][1], 5, 0)  # connections and caches warm
                rates[name] = []
            for b in range(args.blocks):
                for name, (client, run_id) in clients.items():
                    rates[name].append(block(client, run_id, args.requests, 5 + b * args.requests))
        finally:
            for server in servers.values():
                server.stop()
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ratio = medians["cache on"] / medians["cache off"]
    for name, value in medians.items():
        each = ", ".join(f"{r:.1f}" for r in rates[name])
        print(f"{name:9s}  {value:6.1f} requests/s (median of {args.blocks} blocks: {each})")
    print(f"cache on / cache off: {ratio:.2f}x the requests per second")
    if args.out:
        figures = {
            "requests_per_block": args.requests,
            "blocks": args.blocks,
            "requests_per_s": rates,
            "median_requests_per_s": medians,
            "ratio": ratio,
            "cpu_count": os.cpu_count(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
