"""Pipeline throughput with real services, side by side in one run, as ratios.

- Kafka → trainer: `recstream train` from a pre-filled topic against a bare kafka-python
  consumer that only decodes (same topic, same run), and the learner alone on the same events.
- Publish: seconds for the item table into Redis against `redis-benchmark` SET at the value
  sizes the writer uses (one vector; one chunk of rows).
- Versions (`bench.versions`, per catalogue size): full and 1% delta publishes, the reader's
  switch (in place for a delta), exact vs approximate `Reader.recommend` top-100 and recall@100,
  precomputed top-100 lists per 10k users, Redis memory across publishes (peak / payload).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import numpy as np

from bench import services
from bench.progress import Progress
from bench.results import Results
from bench.sizes import Sizes

SECTION = "pipeline"


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recstream-bench-")))
        progress.step("pipeline: starting a broker and redis-server")
        bootstrap = services.broker(stack)
        url, port = services.redis_server(stack)
        _kafka(results, sizes, progress, bootstrap, work)
        _publish(results, sizes, progress, url, port)
        _reader(results, sizes, progress, url)


def _kafka(results: Results, sizes: Sizes, progress: Progress, bootstrap: str, work: Path) -> None:
    from stream.replay import replay
    from stream.synthetic import World, generate, write_jsonl

    n = sizes.pipeline_events
    log = work / "events.jsonl"
    world = World(users=max(1000, n // 20), items=max(1000, n // 10), seed=sizes.seed)
    write_jsonl(log, generate(world, n))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    progress.step(f"pipeline: producing {n:,} events into Kafka")
    replay(log, f"kafka://{bootstrap}/{topic}", partitions=4, progress=False)
    progress.fraction(0.15)
    progress.step("pipeline: raw kafka-python consumer")
    raw = [services.raw_consume(bootstrap, topic, n)]
    progress.fraction(0.25)
    progress.step("pipeline: recstream train from the topic")
    cmd = [sys.executable, "-m", "trainer", "train", "--source", f"kafka://{bootstrap}/{topic}",
           "--group", f"bench-{uuid.uuid4().hex[:6]}", "--checkpoint-dir", str(work / "ckpt"),
           "--stop-when-idle", "3", "--checkpoint-every", "3600", "--no-progress",
           "--log-level", "INFO"]  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"recstream train failed ({done.returncode}): {done.stderr[-1500:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    daemon_rate = float(figures["events_per_s_this_run"])
    steady = steady_rate(done.stderr, n)
    e2e = steady if steady is not None else daemon_rate
    progress.fraction(0.45)
    raw.append(services.raw_consume(bootstrap, topic, n))
    progress.step("pipeline: the learner alone on the same events")
    learn = _learner_alone(log, n)
    progress.fraction(0.55)
    raw_rate = float(np.mean(raw))
    results.add(
        SECTION, "events/s", "kafka-python consumer, decode only (mean of 2)", raw_rate, "ev/s"
    )
    results.add(SECTION, "events/s", "learner alone (in process, default settings)", learn, "ev/s")
    results.add(
        SECTION, "events/s", "recstream train, its own figure (join included)", daemon_rate, "ev/s"
    )
    if steady is None:
        results.pending(
            SECTION,
            "events/s",
            "recstream train end to end, from partition assignment",
            "the daemon's log lines for assignment/idle stop were not found",
        )
    else:
        results.add(
            SECTION,
            "events/s",
            "recstream train end to end, from partition assignment",
            steady,
            "ev/s",
        )
    results.add(
        SECTION,
        "ratio",
        "end to end / raw consumer (target >= 0.5)",
        e2e / raw_rate,
        "×",
        headline=True,
    )
    stages = {"Kafka consume + decode (kafka-python)": raw_rate, "learner step": learn}
    bottleneck = min(stages, key=lambda k: stages[k])
    results.add(
        SECTION,
        "ratio",
        f"bottleneck: {bottleneck} (slowest stage / the other)",
        min(stages.values()) / max(stages.values()),
        "×",
        headline=True,
    )
    results.note(
        SECTION,
        (
            f"{n:,} events pre-filled into a 4-partition topic. End to end = events over the "
            "time from the first partition assignment to the last event, read from the daemon's "
            "log; the daemon's own figure also counts joining the group (~3 s on the local "
            f"broker). Its whole run took {wall:.1f} s with start-up. The daemon fetches and "
            "decodes the next batch while a learner thread trains on the current one, so end to "
            "end is at best the slower stage; both need the GIL for their Python parts, which "
            "is what keeps it below that. "
            f"Bottleneck stage: {bottleneck} ({min(stages.values()):,.0f} ev/s vs "
            f"{max(stages.values()):,.0f} ev/s for the other)."
        ),
    )


_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def steady_rate(log: str, events: int) -> float | None:
    """Events/s from the daemon's INFO log: first partition assignment ("reading from
    offset") to the last event (the idle-stop line minus its idle seconds): the group join
    and start-up left out. None if those lines are not there."""
    start = stop = None
    for line in log.splitlines():
        m = _LOG_TS.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if start is None and "reading from offset" in line:
            start = t
        idle = re.search(r"no event for ([0-9.]+) s", line)
        if idle:
            stop = t - float(idle.group(1))
    if start is None or stop is None or stop <= start:
        return None
    return events / (stop - start)


def _learner_alone(log: Path, n: int) -> float:
    import torch

    from stream.event import Decoder
    from stream.files import iter_lines
    from trainer.core.learner import EventColumns, Learner
    from trainer.core.settings import ModelSettings

    torch.set_num_threads(1)
    decode = Decoder().decode
    events = [decode(line) for line in iter_lines(log)]
    cols = [EventColumns.from_events(events[k : k + 1024]) for k in range(0, len(events), 1024)]
    learner = Learner(ModelSettings())
    t0 = time.perf_counter()
    for c in cols:
        learner.learn(c)
    return n / (time.perf_counter() - t0)


def _snapshot(n_items: int, dim: int, seed: int):  # type: ignore[no-untyped-def]
    from store import Snapshot

    rng = np.random.default_rng(seed)
    return Snapshot(
        version=int(time.time()),
        created_ms=int(time.time() * 1000),
        item_ids=[f"i{k}" for k in range(n_items)],
        item_vectors=rng.standard_normal((n_items, dim), dtype=np.float32),
        user_ids=[str(k) for k in range(1000)],
        user_vectors=rng.standard_normal((1000, dim), dtype=np.float32),
    )


def _publish(results: Results, sizes: Sizes, progress: Progress, url: str, port: int) -> None:
    from store import Writer

    n, dim = sizes.publish_items, 64
    progress.step(f"pipeline: publishing {n:,} x {dim} vectors")
    snap = _snapshot(n, dim, sizes.seed)
    writer = Writer.from_url(url, namespace="bench-publish", grace_s=0)
    t0 = time.perf_counter()
    writer.publish(snap)
    seconds = time.perf_counter() - t0
    writer.drop()
    writer.close()
    table_mb = n * dim * 4 / 1e6
    results.add(
        SECTION,
        "publish seconds",
        f"{n:,} x {dim} item vectors (Writer.publish)",
        seconds,
        "s",
        headline=True,
    )
    results.add(
        SECTION, "MB/s", "publish: item table bytes / publish seconds", table_mb / seconds, "MB/s"
    )
    progress.fraction(0.7)
    chunk = 16384 * dim * 4
    for size, label, requests in (
        (dim * 4, "one vector", 200_000),
        (chunk, "one 16384-row chunk", 64),
    ):
        progress.step(f"pipeline: redis-benchmark SET {size:,} B")
        bench = services.redis_benchmark_mb_s(port, size, requests)
        results.add(
            SECTION,
            "MB/s",
            f"redis-benchmark SET, {size:,} B values ({label})",
            bench["mb_s"],
            "MB/s",
        )
        results.add(
            SECTION,
            "ratio",
            f"publish MB/s / redis-benchmark MB/s at {size:,} B",
            table_mb / seconds / bench["mb_s"],
            "×",
        )
    results.note(
        SECTION,
        (
            "Publishing writes the matrix chunks and a per-id hash (each vector twice), reads the "
            "chunks back to verify, then flips the pointer: ~3x the table's bytes cross the "
            "socket, "
            "so a publish MB/s of a third of redis-benchmark's is the wire's speed."
        ),
    )
    progress.fraction(0.8)


def _reader(results: Results, sizes: Sizes, progress: Progress, url: str) -> None:
    from bench.versions import measure

    for k, n in enumerate(sizes.reader_items):
        progress.step(f"pipeline: versions, delta and index over {n:,} items")
        top_n_users = min(10_000, max(1_000, n // 100))
        rows = measure(
            n, url, users=top_n_users, queries=200, top_n_users=top_n_users, seed=sizes.seed,
            say=lambda text: None,
        )  # fmt: skip
        headline = n == max(sizes.reader_items)
        figures = {what: value for what, value, _ in rows}
        for pct in ("p50", "p99"):  # the rows earlier reports had, under their names
            results.add(
                SECTION,
                f"Reader.recommend top-100 {pct} ms",
                f"{n:,} items, warm",
                figures[f"exact top-100 {pct}" + (" (Reader.recommend)" if pct == "p50" else "")],
                "ms",
            )
        for what, value, unit in rows:
            if what.startswith("snapshot digest"):
                continue
            results.add(
                SECTION,
                what,
                f"{n:,} items",
                value,
                unit,
                headline=headline and ("p50" in what or "recall" in what or "delta (s)" in what),
            )
        progress.fraction(0.8 + 0.2 * (k + 1) / len(sizes.reader_items))
    results.note(
        SECTION,
        (
            "Versions rows (bench/versions.py): a catalogue of taste clusters (n/1000 centres, "
            "dim 64 + bias), 10k users (fewer below 1M items); the writer publishes a full "
            "version with its IVF index (trained, rows assigned, nprobe calibrated for recall "
            "0.95 on its own users), a delta with 1% of the rows changed, then a full version "
            "that reuses the index. Latencies are Reader.recommend calls (user vector from "
            "Redis + top-100), one at a time. Redis memory is used_memory sampled every 20 ms; "
            "payload = one full version. The 10M-item run is `python -m bench.versions --items "
            "10000000` (README)."
        ),
    )
