"""Replay an event log into a Kafka topic: each line as it is, keyed by user.

Lines are produced byte for byte, bad ones included: validation is the consumer's job, and a
bad line ends up in the dead-letter topic with its reason, not silently dropped here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from tqdm import tqdm

from stream.defaults import TOPIC_PARTITIONS
from stream.errors import SourceError, Unreachable
from stream.files import iter_lines
from stream.uri import parse_uri


class _Key(msgspec.Struct):
    user: str | int | None = None
    ts: int | None = None


_peek = msgspec.json.Decoder(_Key).decode


def _key_and_ts(line: bytes) -> tuple[bytes | None, int | None]:
    try:
        k = _peek(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None  # produced unkeyed; the trainer dead-letters it with the reason
    key = None if k.user is None else str(k.user).encode()
    ts = k.ts if k.ts is not None and k.ts >= 0 else None
    return key, ts


def replay(
    path: str | os.PathLike[str],
    to: str,
    rate: float = 0.0,
    partitions: int = TOPIC_PARTITIONS,
    progress: bool = True,
    client_options: Mapping[str, Any] | None = None,
) -> int:
    """Produce every line of `path` into the topic of `to` (kafka://HOST:PORT/TOPIC).

    `rate` limits events/s (0 = as fast as possible). The event's `ts`, when readable, becomes
    the record timestamp. `client_options` go to kafka-python (security_protocol, sasl_*,
    ssl_*). Returns the number of records produced, all acknowledged.
    """
    from stream.kafka import KafkaSettings, KafkaSink, ensure_topic

    uri = parse_uri(to)
    if uri.scheme != "kafka":
        raise SourceError(f"--to must be kafka://HOST:PORT/TOPIC, got {to!r}")
    if rate < 0:
        raise SourceError(f"--rate must be >= 0 events/s (0 = unlimited), got {rate}")
    settings = KafkaSettings(bootstrap=uri.bootstrap, client_options=dict(client_options or {}))
    try:
        ensure_topic(settings, uri.topic, partitions)
    except Unreachable as e:
        raise Unreachable(e.address, e.reason, setting="--to") from e
    sink = KafkaSink(settings, uri.topic)
    started = time.monotonic()
    n = 0
    try:
        with tqdm(desc=f"replay → {uri.topic}", unit="ev", disable=not progress) as bar:
            for line in iter_lines(path):
                key, ts = _key_and_ts(line)
                sink.send(line, key=key, timestamp_ms=ts)
                n += 1
                if n % 1000 == 0:
                    bar.update(1000)
                    if rate > 0:
                        ahead = n / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
            bar.update(n % 1000)
    finally:
        sink.close()  # flushes: raises if any record was not acknowledged
    return n
