"""A source in a process of its own keeps the source's contract (real broker, real processes)."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import pytest

from stream.errors import SourceError
from stream.kafka import KafkaSettings, build_source, ensure_topic
from stream.process import ProcessSource
from stream.source import Batch
from tests.test_stream_kafka import committed, event, produce

pytestmark = pytest.mark.slow  # every test spawns a process and joins a group


def _source(
    settings: KafkaSettings, topic: str, group: str, on_revoke=None, **kw: object
) -> ProcessSource:
    build = functools.partial(build_source, settings.plain(), topic, group, **kw)
    return ProcessSource(build, (), 1000, 0.3, on_revoke=on_revoke)


def _drain(source: ProcessSource, want: int, limit_s: float = 30) -> tuple[list[str], dict]:
    users: list[str] = []
    offsets: dict[str, int] = {}
    deadline = time.monotonic() + limit_s
    while len(users) < want and time.monotonic() < deadline:
        batch = source.poll(1000, 0.5)
        users += batch.as_columns().users
        offsets.update(batch.offsets)
    return users, offsets


def test_batches_offsets_dead_letters_and_commits_cross_the_process(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=2)
    records = [(n % 2, event(n)) for n in range(300)] + [(0, b"not json"), (1, b"{}")]
    produce(kafka_settings, topic, records)
    group = f"{topic}-g"
    source = _source(kafka_settings, topic, group)
    try:
        users, offsets = _drain(source, 300)
        assert sorted(int(u) for u in users) == list(range(300))  # each event once
        assert offsets == {f"{topic}:0": 151, f"{topic}:1": 151}  # the bad records passed too
        assert source.identity() == {f"kafka:{topic}": source.identity()[f"kafka:{topic}"]}
        assert source.ready() and source.assigned() == [f"{topic}:0", f"{topic}:1"]
        source.flush()  # the two dead letters, durably in <topic>.dlq
        source.commit(offsets)
        assert committed(kafka_settings, group, topic, 2) == {0: 151, 1: 151}
    finally:
        source.close()


def test_a_revocation_is_handed_over_in_order_and_nothing_is_read_twice(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    """The child's rebalance waits while the owner learns and commits through the source."""
    ensure_topic(kafka_settings, topic, partitions=2)
    produce(kafka_settings, topic, [(n % 2, event(n)) for n in range(40)])
    group = f"{topic}-g"
    handed: list[Batch] = []
    owner: list[ProcessSource] = []
    applied: dict[str, int] = {}

    def on_revoke(batch: Batch) -> None:  # what the trainer does: apply, then commit all
        handed.append(batch)
        applied.update(batch.offsets)
        owner[0].commit(applied)  # the child's poll waits on the rebalance meanwhile

    first = _source(kafka_settings, topic, group, on_revoke=on_revoke)
    owner.append(first)
    seen, offsets = _drain(first, 40)  # everything fetched and handed out first
    applied.update(offsets)
    assert sorted(int(u) for u in seen) == list(range(40))
    second_users: list[str] = []
    stop = threading.Event()

    def run_second() -> None:
        second = _source(kafka_settings, topic, group)
        try:
            while not stop.is_set():
                second_users.extend(second.poll(1000, 0.3).as_columns().users)
        finally:
            second.close()

    joiner = threading.Thread(target=run_second)
    joiner.start()
    try:
        deadline = time.monotonic() + 30
        while not handed and time.monotonic() < deadline:
            first.poll(1000, 0.3)
        assert handed, "no revocation reached the owner"
        assert committed(kafka_settings, group, topic, 2) == {0: 20, 1: 20}
        produce(kafka_settings, topic, [(n % 2, event(n)) for n in range(40, 60)])
        later: list[str] = []
        deadline = time.monotonic() + 30
        while len(later) + len(second_users) < 20 and time.monotonic() < deadline:
            later += first.poll(1000, 0.3).as_columns().users
    finally:
        stop.set()
        joiner.join()
        first.close()
    assert sorted(int(u) for u in later + second_users) == list(range(40, 60))


def test_a_dead_child_is_an_error_not_a_hang(kafka_settings: KafkaSettings, topic: str) -> None:
    ensure_topic(kafka_settings, topic, partitions=1)
    source = _source(kafka_settings, topic, f"{topic}-g")
    try:
        os.kill(source._proc.pid, signal.SIGKILL)
        with pytest.raises(SourceError, match="source process ended"):
            for _ in range(20):
                source.poll(1000, 0.5)
        with pytest.raises(SourceError, match="source process ended"):
            source.commit({f"{topic}:0": 0})
    finally:
        source.close()


def test_a_source_that_cannot_start_raises_its_error(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        _source(kafka_settings, "no-such-topic-anywhere", "g")
