"""Scale-out: one trainer against a group of W ranks (`recstream train --workers W`) on the same
topic, in one run.

    python -m bench.group --events 200000 --workers 1,2 --repeats 2

The pipeline's realistic stream (bench.ceiling.realistic_log) is produced into a topic of 4
partitions keyed by user; each configuration trains it from the start (a fresh group and
checkpoint directory) to its idle stop, `repeats` times, interleaved. Per configuration: events/s
from its partitions' assignment to its last event (a single trainer: from its log, as the
pipeline section reads it; a group: rank 0's summary line, its loop starting once the ranks
have joined and assigned their partitions; start-up left out of both), CPU seconds
per 1k events (the trainer and every child process: torchrun, ranks, source processes), and for
a group rank 0's share of its run spent in the group's collectives (waits for the slower rank
included). The machine's cores bound what W ranks can gain: on 2 cores two ranks with their
source processes already share the CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import daemon, services


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(events: int, workers: list[int], repeats: int, seed: int) -> list[dict[str, Any]]:
    from bench.ceiling import realistic_log
    from stream.replay import replay

    rows: dict[int, list[dict[str, Any]]] = {w: [] for w in workers}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="recstream-group-") as d:
        work = Path(d)
        bootstrap = services.broker(stack)
        log = work / "events.jsonl"
        n, _ = realistic_log(log, events, seed)
        topic = f"bench-group-{uuid.uuid4().hex[:8]}"
        replay(log, f"kafka://{bootstrap}/{topic}", partitions=4, progress=False)
        for k in range(repeats):
            for w in workers:
                tag = f"{w}-{k}"
                cmd = daemon.command(
                    bootstrap, topic, f"bench-{tag}-{uuid.uuid4().hex[:6]}", work / f"ckpt-{tag}"
                )
                if w > 1:
                    cmd += ["--workers", str(w)]
                cpu0 = _children_cpu_s()
                figures, stderr, wall = daemon.train(cmd)
                cpu = _children_cpu_s() - cpu0
                if figures["events_applied"] != n:
                    raise RuntimeError(f"W={w} applied {figures['events_applied']} of {n}")
                # alike for both: from the first partition (a single trainer's own figure
                # includes its Kafka group join; a rank assigns its partitions, joins nothing)
                steady = daemon.steady_rate(stderr, n) if w == 1 else None
                rate = steady or float(figures["events_per_s_this_run"])
                rows[w].append(
                    {
                        "events_per_s": rate,
                        "cpu_s_per_1k": 1000 * cpu / n,
                        "wall_s": wall,
                        "collective_share": (
                            figures["collective_s"] * rate / n if "collective_s" in figures else 0.0
                        ),
                    }
                )
                print(f"W={w} run {k}: {rate:,.0f} events/s, {1000 * cpu / n:.2f} CPU-s/1k")
    out = []
    for w, runs in rows.items():
        out.append(
            {
                "workers": w,
                **{
                    key: statistics.median(r[key] for r in runs)
                    for key in ("events_per_s", "cpu_s_per_1k", "wall_s", "collective_share")
                },
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--workers", default="1,2", help="comma-separated group sizes, e.g. 1,2")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    table = run(a.events, workers, a.repeats, a.seed)
    base = table[0]["events_per_s"]
    print(f"\n{a.events:,} events, 4 partitions, {os.cpu_count()} cores, median of {a.repeats}")
    print("| W | events/s | × W=1 | CPU-s per 1k events | rank 0 in collectives |")
    print("|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['workers']} | {r['events_per_s']:,.0f} | {r['events_per_s'] / base:.2f} | "
            f"{r['cpu_s_per_1k']:.2f} | {r['collective_share']:.0%} |"
        )


if __name__ == "__main__":
    main()
