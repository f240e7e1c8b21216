"""Real services for the pipeline benchmark, and the raw-speed references they are held to.

A broker from KAFKA_BOOTSTRAP_SERVERS, else the local Tansu broker; always a redis-server of
our own on a free port (so `redis-benchmark` and the writer talk to the same idle server).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from contextlib import ExitStack
from typing import Any


def broker(stack: ExitStack) -> str:
    import os

    if env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return env
    from stream.broker import LocalBroker

    return stack.enter_context(LocalBroker()).bootstrap


def redis_server(stack: ExitStack) -> tuple[str, int]:
    """(url, port) of a fresh redis-server on 127.0.0.1."""
    from store import RedisServer

    server = stack.enter_context(RedisServer())
    return server.url, server.port


def raw_consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 300.0) -> float:
    """Events/s of a bare kafka-python consumer reading `topic` from the start with the
    source's client settings and `json.loads` of each value: no group, no ledger, no
    validation, no learning (the reference the end-to-end rate is held to)."""
    from kafka import KafkaConsumer, TopicPartition

    from stream.kafka import KafkaSettings

    ks = KafkaSettings(bootstrap)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        check_crcs=ks.check_crcs,
        fetch_max_bytes=ks.fetch_max_bytes,
        max_partition_fetch_bytes=ks.max_partition_fetch_bytes,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        decode = json.loads
        n = 0
        started = None
        deadline = time.monotonic() + timeout_s
        while n < expected and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500, max_records=5000).values():
                if started is None:
                    started = time.perf_counter()
                for r in recs:
                    decode(r.value)
                n += len(recs)
        if started is None or n < expected:
            raise RuntimeError(f"read {n} of {expected} events from {topic} in {timeout_s} s")
        return n / (time.perf_counter() - started)
    finally:
        consumer.close()


def redis_benchmark_mb_s(port: int, size: int, requests: int, pipeline: int = 16) -> dict[str, Any]:
    """SET throughput of `redis-benchmark` with `size`-byte values: requests/s and MB/s."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not on PATH (apt-get install redis-tools)")
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-t", "set", "-d", str(size),
         "-n", str(requests), "-P", str(pipeline), "-c", "4", "-q", "--csv"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "SET":
            rps = float(cells[1])
            return {"requests_per_s": rps, "mb_s": rps * size / 1e6}
    raise RuntimeError(f"cannot read redis-benchmark's output: {out[:200]!r}")
