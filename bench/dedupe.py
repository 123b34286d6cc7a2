"""Near-duplicate grouping of perceptual hashes: catdog.dedupe against the plain pairwise loop.

Run: .venv/bin/python bench/dedupe.py [--n 2400] [--repeats 3]
Groups N random 64-bit hashes (one planted near pair) with ``group_near_duplicates`` and with a
pure-Python loop over every pair; prints each one's best time of the repeats and their ratio,
measured in this run. Goal: the grouping at least 10x faster than the loop on 2,400 hashes (the
shared training pool's size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from catdog.dedupe import group_near_duplicates, hamming_distance


def pairwise_loop(hashes: list[int], max_distance: int) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if hamming_distance(hashes[i], hashes[j]) <= max_distance
    ]


def best_of(repeats: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2400, help="hashes (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64 - 1, args.n, dtype=np.uint64, endpoint=True).tolist()
    hashes[args.n // 2] = hashes[17] ^ 1
    grouped_s, groups = best_of(args.repeats, lambda: group_near_duplicates(hashes, 4))
    loop_s, pairs = best_of(1, lambda: pairwise_loop(hashes, 4))
    assert pairs == [(17, args.n // 2)] and len(set(groups.tolist())) == args.n - 1
    print(f"{args.n} hashes, one near pair (found by both)")
    print(f"group_near_duplicates: {grouped_s * 1000:.1f} ms (best of {args.repeats})")
    print(f"pairwise Python loop:  {loop_s * 1000:.1f} ms (one run)")
    print(f"ratio: {loop_s / grouped_s:.0f}x faster (goal >= 10x)")


if __name__ == "__main__":
    main()
