"""How DVC copes with the ingested shared photos (2,400 small files in data/raw).

Run: .venv/bin/python bench/dvc_data.py [--photos DIR]
Prints the wall time of `dvc add`, `dvc status` (cold and warm), `dvc push` to a local remote
and `dvc pull` into a fresh clone, each measured once in this run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from catdog.ingest import ingest_source  # noqa: E402
from catdog.sources import prepare_source  # noqa: E402

DVC = str(Path(sys.executable).parent / "dvc")


def timed(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        cmd, cwd=cwd, check=True, capture_output=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"}
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photos", type=Path, default=REPO.parent / "shared/data/dogs-vs-cats-2400/train"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="catdog-bench-dvc-") as scratch:
        root = Path(scratch) / "repo"
        root.mkdir()
        started = time.perf_counter()
        report = ingest_source(
            prepare_source(args.photos, root / "work"),
            root / "data" / "raw",
            max_pixels=40_000_000,
            min_per_class=1,
        )
        ingest_s = time.perf_counter() - started
        n = report.counts["accepted"]
        size_mb = sum(p.stat().st_size for p in (root / "data/raw").rglob("*")) / 1e6
        for cmd in (
            ["git", "init", "-q"],
            [DVC, "init", "-q"],
            [DVC, "remote", "add", "-d", "local", str(Path(scratch) / "remote")],
        ):
            subprocess.run(cmd, cwd=root, check=True)
        rows = [("ingest (decode + write)", ingest_s)]
        rows.append(("dvc add data/raw", timed([DVC, "add", "-q", "data/raw"], root)))
        rows.append(("dvc status (first)", timed([DVC, "status", "-q"], root)))
        rows.append(("dvc status (again)", timed([DVC, "status", "-q"], root)))
        rows.append(("dvc push (local remote)", timed([DVC, "push", "-q"], root)))
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "data"],
            cwd=root,
            check=True,
        )
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        rows.append(("dvc pull (fresh clone)", timed([DVC, "pull", "-q"], clone)))
        shutil.rmtree(root / "work", ignore_errors=True)
    print(f"{n} images, {size_mb:.0f} MB in data/raw")
    for name, seconds in rows:
        print(f"  {name:<26} {seconds:6.2f} s  ({n / seconds:7.0f} images/s)")


if __name__ == "__main__":
    main()
