"""Memory under a flood of one-off ids: resident memory of the learner over a long stream.

`python -m bench.memory [--events 5000000] [--flood 10000000] [-o DIR]` trains on a stream of
regular events (users and items that come back) with `--flood` distinct one-off ids mixed in
(events whose user and item are never seen again), under row caps, and prints the process's
resident memory every `--every` events (and writes memory.png with -o). With admission
(`--min-count 2`) and caps, memory stays flat: one-off ids are counted in a fixed-size sketch
and share bucket rows; nothing per id grows.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from trainer.core.learner import EventColumns, Learner
from trainer.core.negatives import parse_negatives
from trainer.core.settings import ModelSettings
from trainer.daemon.allocator import keep_freed_memory

BATCH = 1024


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def batches(events: int, flood: int, users: int, items: int, seed: int):
    """Regular events (Zipf items, returning users) and flood events (two fresh ids each),
    shuffled together; yields EventColumns of BATCH events."""
    rng = np.random.default_rng(seed)
    flood_events = flood // 2
    total = events + flood_events
    is_flood = np.zeros(total, bool)
    is_flood[rng.choice(total, flood_events, replace=False)] = True
    next_flood = 0
    ts = 1_700_000_000_000
    for lo in range(0, total, BATCH):
        f = is_flood[lo : lo + BATCH]
        n = len(f)
        u = rng.integers(0, users, n)
        it = (rng.zipf(1.2, n) - 1) % items
        k = int(f.sum())
        ids = np.arange(next_flood, next_flood + k)
        next_flood += k
        user_ids = [str(x) for x in u]
        item_ids = [f"i{x}" for x in it]
        for pos, fid in zip(np.flatnonzero(f).tolist(), ids.tolist(), strict=True):
            user_ids[pos] = f"flood-user-{fid}"
            item_ids[pos] = f"flood-item-{fid}"
        yield EventColumns(user_ids, item_ids, np.full(n, ts, np.int64), np.ones(n, np.float32))
        ts += 60_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=5_000_000, help="regular events")
    p.add_argument("--flood", type=int, default=10_000_000, help="distinct one-off ids")
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--max-users", type=int, default=150_000, help="row cap (below --users)")
    p.add_argument("--max-items", type=int, default=80_000, help="row cap (below --items)")
    p.add_argument("--min-count", type=int, default=2)
    p.add_argument("--every", type=int, default=500_000, help="print RSS every N events")
    p.add_argument("-o", "--output", type=Path, default=None, help="folder for memory.png")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    keep_freed_memory()  # as the trainer runs
    learner = Learner(
        ModelSettings(
            negatives=parse_negatives("popularity:256,in-batch"),
            min_count=a.min_count,
            max_users=a.max_users,
            max_items=a.max_items,
            eval_sample=0,
        )
    )
    seen, next_mark, t0 = 0, 0, time.perf_counter()
    points: list[tuple[int, float]] = []
    print(
        f"{'events':>12} {'RSS MB':>9} {'user rows':>10} {'item rows':>10} "
        f"{'admitted':>9} {'evicted':>9} {'ev/s':>8}"
    )
    for cols in batches(a.events, a.flood, a.users, a.items, seed=0):
        learner.learn(cols)
        seen += len(cols)
        if seen >= next_mark:
            mb = rss_mb()
            points.append((seen, mb))
            rate = seen / (time.perf_counter() - t0)
            print(
                f"{seen:>12,} {mb:>9.0f} {learner.users.rows_used:>10,} "
                f"{learner.items.rows_used:>10,} "
                f"{learner.users.admitted + learner.items.admitted:>9,} "
                f"{learner.users.evicted + learner.items.evicted:>9,} {rate:>8,.0f}",
                flush=True,
            )
            next_mark += a.every
    points.append((seen, rss_mb()))
    # flat = the second half of the run stays within 10% of the RSS at its start
    half = [mb for n, mb in points if n >= seen // 2]
    growth = (max(half) - half[0]) / half[0]
    print(
        f"\nRSS over the second half: {half[0]:.0f} → max {max(half):.0f} MB "
        f"({100 * growth:+.1f}%); flat (< 10%): {growth < 0.10}"
    )
    if a.output is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        a.output.mkdir(parents=True, exist_ok=True)
        xs, ys = zip(*points, strict=True)
        plt.figure(figsize=(6, 3.5))
        plt.plot(np.array(xs) / 1e6, ys, marker="o")
        plt.xlabel("events (millions, flood included)")
        plt.ylabel("resident memory (MB)")
        plt.title(f"{a.flood / 1e6:.0f}M one-off ids, row caps {a.max_users:,}/{a.max_items:,}")
        plt.tight_layout()
        plt.savefig(a.output / "memory.png", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
