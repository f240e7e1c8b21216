"""Pipeline throughput with real services, side by side in one run, as ratios.

- Kafka → trainer, on the realistic ratings stream: `recstream train` from a pre-filled topic
  (with its source process, the default, and with --no-source-process) against a bare
  kafka-python consumer that only decodes (json.loads; same topic, same run) and against the
  learner alone on the same events; the learner against this machine's compute ceiling (at
  the default configuration, and at B=1024 with popularity:1024 over 1M items); a restart's
  seconds from process start to the first trained event, by phase.
- Publish: seconds for the item table into Redis against `redis-benchmark` SET at the value
  sizes the writer uses (one vector; one chunk of rows).
- Versions (`bench.versions`, per catalogue size): full and 1% delta publishes, the reader's
  switch (in place for a delta), exact vs approximate `Reader.recommend` top-100 and recall@100,
  precomputed top-100 lists per 10k users, Redis memory across publishes (peak / payload).
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench import daemon, services
from bench.daemon import steady_rate
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
    from bench.ceiling import catalogue_run, learner_alone, realistic_log
    from bench.isolated import run_isolated
    from stream.replay import replay

    load = [os.getloadavg()[0]]
    log = work / "events.jsonl"
    progress.step(f"pipeline: a realistic stream of {sizes.pipeline_events:,} events")
    n, described = realistic_log(log, sizes.pipeline_events, sizes.seed)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    progress.step(f"pipeline: producing {n:,} events into Kafka")
    replay(log, f"kafka://{bootstrap}/{topic}", partitions=4, progress=False)
    progress.fraction(0.1)
    progress.step("pipeline: raw kafka-python consumer")
    raw = [services.raw_consume(bootstrap, topic, n)]
    e2e: dict[str, float | None] = {}
    own: dict[str, float] = {}
    first: tuple[str, Path] | None = None
    for k, (mode, extra) in enumerate(MODES.items()):
        progress.step(f"pipeline: recstream train from the topic, {mode}")
        group, checkpoints = f"bench-{uuid.uuid4().hex[:6]}", work / f"ckpt-{k}"
        figures, stderr, _ = daemon.train(
            daemon.command(bootstrap, topic, group, checkpoints, *extra)
        )
        own[mode] = float(figures["events_per_s_this_run"])
        e2e[mode] = steady_rate(stderr, n)
        first = first or (group, checkpoints)
        progress.fraction(0.15 + 0.1 * (k + 1))
    raw.append(services.raw_consume(bootstrap, topic, n))
    progress.step("pipeline: the learner alone on the same events")
    alone = run_isolated(learner_alone, log)
    progress.fraction(0.4)
    progress.step("pipeline: a restart to its first trained event")
    assert first is not None
    more = min(n, 20_000)
    restart = _restart(bootstrap, topic, log, *first, more, work)
    progress.fraction(0.45)
    items = sizes.ceiling_items
    progress.step(f"pipeline: the learner over {items:,} items, popularity:1024")
    big = run_isolated(catalogue_run, items, max(1000, items // 10), "popularity:1024")
    load.append(os.getloadavg()[0])
    progress.fraction(0.55)

    raw_rate = float(np.mean(raw))
    learn = alone["events_per_s"]
    add = functools.partial(results.add, SECTION)
    add("events/s", "kafka-python consumer, json.loads per record (mean of 2)", raw_rate, "ev/s")
    add("events/s", "learner alone (default settings, the same events in log order)", learn, "ev/s")
    for mode in MODES:
        add(
            "events/s",
            f"recstream train, {mode}, its own figure (join included)",
            own[mode],
            "ev/s",
        )
        subject = f"recstream train end to end, {mode}, from partition assignment"
        rate = e2e[mode]
        if rate is None:
            why = "no log line for the assignment ('reading from offset') or the idle stop"
            results.pending(SECTION, "events/s", subject, why)
            continue
        add("events/s", subject, rate, "ev/s")
        default = mode == DEFAULT
        to_learner = f"end to end ({mode}) / learner alone (target >= 0.9)"
        add("ratio", to_learner, rate / learn, "×", headline=default)
        to_raw = f"end to end ({mode}) / raw consumer (target >= 0.5, goal 0.7)"
        add("ratio", to_raw, rate / raw_rate, "×", headline=default)
    _ceiling_rows(results, alone, "default configuration, realistic stream")
    _ceiling_rows(results, big, f"B=1024, popularity:1024, {big['items']:,} items")
    for phase, seconds in restart["phases"].items():
        add("restart seconds", phase, seconds, "s")
    add(
        "restart seconds",
        "process start to the first trained event",
        restart["total_s"],
        "s",
        headline=True,
    )
    stages = {"Kafka consume + decode (kafka-python)": raw_rate, "learner step": learn}
    bottleneck = min(stages, key=lambda k: stages[k])
    results.note(
        SECTION,
        (
            f"Kafka → trainer, on the realistic ratings stream ({described}; its first {n:,} "
            "positives, ids as strings, event times over a year), pre-filled into a "
            "4-partition topic keyed by user. Raw = a bare kafka-python consumer with the "
            "source's client settings, json.loads per record, no group (mean of a run before "
            "and one after the trainers). End to end = events over the time from the first "
            "partition assignment ('reading from offset', which the source process logs too) "
            "to the last event, read from the daemon's log; its own figure also counts joining "
            "the group. Learner alone = the default learner in a fresh process on the same "
            "events decoded as the source decodes them, in log order, batches of 1024 "
            f"(evaluation on: {alone['eval_share']:.0%} of its time); the trainer learns "
            "them as the partitions interleave. Slowest stage: "
            f"{bottleneck} ({min(stages.values()):,.0f} ev/s vs {max(stages.values()):,.0f}). "
            f"Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (2 cores)."
        ),
    )
    results.note(SECTION, _ceiling_note(alone, big))
    results.note(
        SECTION,
        "Restart: `recstream train` started again on the first run's checkpoint directory and "
        f"group after {more:,} more events were produced; phases from its log's timestamps "
        "('train: source', 'metrics on', 'resumed from checkpoint', the first 'reading from "
        "offset') and the first recstream_events_trained > 0 on /metrics (polled every "
        "10 ms). The local broker holds a first JoinGroup for session_timeout/2 (DESIGN.md): "
        "the group-join phase includes it.",
    )


MODES = {"source process (default)": (), "--no-source-process": ("--no-source-process",)}
DEFAULT = "source process (default)"


def _ceiling_rows(results: Results, r: dict[str, Any], config: str) -> None:
    add = functools.partial(results.add, SECTION)
    add("compute ceiling", f"fp32 matmul GFLOP/s, 1 thread ({config})", r["gflops"], "GFLOP/s")
    add("compute ceiling", f"FLOPs per event ({config})", r["flops_per_event"], "FLOP")
    add("compute ceiling", f"ceiling events/s ({config})", r["ceiling_events_per_s"], "ev/s")
    add("compute ceiling", f"learner events/s ({config})", r["events_per_s"], "ev/s")
    add(
        "ratio",
        f"learner / compute ceiling, {config} (target >= 0.5)",
        r["share"],
        "×",
        headline=True,
    )
    add("ratio", f"learner step without its evaluation / ceiling, {config}", r["step_share"], "×")


def _ceiling_note(alone: dict[str, Any], big: dict[str, Any]) -> str:
    def parts(r: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v / 1e3:,.0f}k" for k, v in r["flops_parts"].items() if v)

    return (
        "Compute ceiling = fp32 torch.mm GFLOP/s on one thread at the step's shapes, "
        "(B×64)@(64×S) and the backward (B×S)@(S×64), (S×B)@(B×64), measured in the learner's "
        "process before and after its run (mean), divided by the FLOPs per event of the "
        "configuration: shared logits 6·d·S (forward 2·d·S, backward 4·d·S; S = popularity "
        "draws + in-batch columns), the tower 6·in·out per layer, the history mean 4·d per "
        "history item, gravity 6·d² for ΨᵀΨ and 10·d²·T/B for the touched rows' Gramian and "
        "its update (T = item rows a step gathers); gathers, the sparse Adagrad update, "
        "sampling and the evaluation are not counted. Default, realistic stream: S = "
        f"{alone['shared']:.0f}, T = {alone['touched']:,.0f}, {alone['history']:.1f} history "
        f"items per query: {parts(alone)} FLOPs per event. Over {big['items']:,} items with "
        f"popularity:1024: S = {big['shared']:.0f}, T = {big['touched']:,.0f}, "
        f"{big['history']:.1f} history items: {parts(big)}; its evaluation took "
        f"{big['eval_share']:.0%} of the time."
    )


def _restart(
    bootstrap: str, topic: str, log: Path, group: str, checkpoints: Path, more: int, work: Path
) -> dict[str, Any]:
    """`recstream train` started again on `checkpoints` after `more` new events."""
    from stream.broker import free_port
    from stream.replay import replay

    extra = work / "more.jsonl"
    with open(log, "rb") as src, open(extra, "wb") as dst:
        dst.writelines(line for _, line in zip(range(more), src, strict=False))
    replay(extra, f"kafka://{bootstrap}/{topic}", partitions=4, progress=False)
    port = free_port()
    cmd = daemon.command(bootstrap, topic, group, checkpoints, "--metrics-port", str(port))
    return daemon.restart(cmd, port)


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
