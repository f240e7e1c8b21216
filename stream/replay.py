"""Replay an event log into a Kafka topic, keyed by user, as fast as possible or paced.

A JSONL log read without a mapping is produced line by line, byte for byte, bad lines included:
validation is then the consumer's job, and a bad line ends up in the dead-letter topic with its
reason. A CSV, TSV or Parquet file (or a JSONL log read through a mapping) is mapped record by
record to the event format and validated here, as the trainer would: a bad record goes to the
dead-letter file with its line or row number and the reason, and the replay goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from tqdm import tqdm

from stream.deadletter import DeadLetterFile
from stream.defaults import TOPIC_PARTITIONS
from stream.errors import SourceError, Unreachable
from stream.event import Decoder
from stream.files import iter_lines
from stream.formats import EventReader, LogFormat
from stream.pacing import Pace
from stream.uri import parse_uri

DEAD_LETTER = "dead-letter.jsonl"


class _Peek(msgspec.Struct):
    user: str | int | None = None
    ts: int | None = None
    weight: float | None = None


_peek = msgspec.json.Decoder(_Peek).decode


class Sink(Protocol):
    """Where replayed records go (`stream.kafka.KafkaSink`, or a counter in tests)."""

    def send(self, value: bytes, key: bytes | None = None, timestamp_ms: int | None = None) -> None:
        """Queue one record."""
        ...


@dataclass
class Replayed:
    """What a replay did: records produced, rejected into `dead_letter`, dropped below the
    minimum weight; the first and last event time (epoch ms) and the seconds it took."""

    produced: int = 0
    rejected: int = 0
    dropped: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    seconds: float = 0.0
    dead_letter: str | None = None


class ReplayLog:
    """The records of a log to produce, as ``(value, key, ts)``; opening it checks the mapping
    against the file (a `MappingError` before anything is produced)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        log_format: LogFormat | None = None,
        dead_letter: str | os.PathLike[str] = DEAD_LETTER,
    ) -> None:
        self.path = os.fspath(path)
        self.format = log_format or LogFormat()
        self.dead = DeadLetterFile(dead_letter, f"file:{os.path.abspath(self.path)}")
        self.events: EventReader | None = None
        self._dropped = 0
        if not self.format.lines_as_events(self.path):
            self.events = EventReader(self.path, self.format, Decoder(), self.dead.write)
        else:  # a missing file is an error now, not after connecting
            self.format.open(self.path)[0].close()

    def __iter__(self) -> Iterator[tuple[bytes, bytes | None, int | None]]:
        if self.events is None:
            yield from self._lines()
            return
        take = self.events.next
        while (got := take()) is not None:
            raw, event = got
            yield raw, event.user.encode(), event.ts

    def _lines(self) -> Iterator[tuple[bytes, bytes | None, int | None]]:
        least = self.format.min_weight
        for line in iter_lines(self.path):
            try:
                p = _peek(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                yield line, None, None  # produced unkeyed; the trainer dead-letters it
                continue
            if least and (1.0 if p.weight is None else p.weight) < least:
                self._dropped += 1
                continue
            ts = p.ts if p.ts is not None and p.ts >= 0 else None
            yield line, None if p.user is None else str(p.user).encode(), ts

    @property
    def rejected(self) -> int:
        return self.events.rejected if self.events is not None else 0

    @property
    def dropped(self) -> int:
        return self.events.dropped if self.events is not None else self._dropped

    def close(self) -> None:
        self.dead.close()
        if self.events is not None:
            self.events.close()


def send(log: ReplayLog, sink: Sink, pace: Pace, progress: bool = True, desc: str = "") -> Replayed:
    """Produce every record of `log` into `sink` at `pace`; the progress bar shows the count
    and the event time reached."""
    done = Replayed(dead_letter=log.dead.path)
    started = time.monotonic()
    n = shown = 0
    paced = pace.limited
    with tqdm(desc=desc or "replay", unit="ev", disable=not progress) as bar:
        for value, key, ts in log:
            if paced and pace.wait(ts) and progress:
                bar.update(n - shown)
                shown = n
                _show_time(bar, done.last_ts)
            sink.send(value, key=key, timestamp_ms=ts)
            n += 1
            if ts is not None:
                done.last_ts = ts
                if done.first_ts is None:
                    done.first_ts = ts
            if n - shown >= 1000:
                bar.update(n - shown)
                shown = n
                _show_time(bar, done.last_ts)
        bar.update(n - shown)
        _show_time(bar, done.last_ts)
    done.produced, done.rejected, done.dropped = n, log.rejected, log.dropped
    done.seconds = time.monotonic() - started
    return done


def _show_time(bar: tqdm, ts: int | None) -> None:  # type: ignore[type-arg]
    if ts is not None and not bar.disable:
        at = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        bar.set_postfix_str(f"event time {at}", refresh=False)


def replay_into(
    path: str | os.PathLike[str],
    sink: Sink,
    rate: float = 0.0,
    speed: float = 0.0,
    progress: bool = False,
    log_format: LogFormat | None = None,
    dead_letter: str | os.PathLike[str] = DEAD_LETTER,
) -> Replayed:
    """`replay` into any `sink` (what the tests and benchmarks use without a broker)."""
    pace = Pace(rate, speed)
    log = ReplayLog(path, log_format, dead_letter)
    try:
        return send(log, sink, pace, progress)
    finally:
        log.close()


def replay(
    path: str | os.PathLike[str],
    to: str,
    rate: float = 0.0,
    speed: float = 0.0,
    partitions: int = TOPIC_PARTITIONS,
    progress: bool = True,
    client_options: Mapping[str, Any] | None = None,
    log_format: LogFormat | None = None,
    dead_letter: str | os.PathLike[str] = DEAD_LETTER,
) -> Replayed:
    """Produce every event of `path` into the topic of `to` (kafka://HOST:PORT/TOPIC).

    `rate` limits events/s, `speed` replays at that many times the pace the events happened
    (0 = as fast as possible). The event's `ts` becomes the record timestamp. `log_format`
    says how to read the log (format, field mapping, minimum weight). `client_options` go to
    kafka-python (security_protocol, sasl_*, ssl_*). Every produced record is acknowledged.
    """
    from stream.kafka import KafkaSettings, KafkaSink, ensure_topic

    uri = parse_uri(to)
    if uri.scheme != "kafka":
        raise SourceError(f"--to must be kafka://HOST:PORT/TOPIC, got {to!r}")
    pace = Pace(rate, speed)
    log = ReplayLog(path, log_format, dead_letter)
    try:
        settings = KafkaSettings(bootstrap=uri.bootstrap, client_options=dict(client_options or {}))
        try:
            ensure_topic(settings, uri.topic, partitions)
        except Unreachable as e:
            raise Unreachable(e.address, e.reason, setting="--to") from e
        sink = KafkaSink(settings, uri.topic)
        try:
            return send(log, sink, pace, progress, f"replay → {uri.topic}")
        finally:
            sink.close()  # flushes: raises if any record was not acknowledged
    finally:
        log.close()
