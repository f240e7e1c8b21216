"""The Kafka source and sink against a real broker (Tansu here, Apache Kafka where it runs).

kafka-python is used directly only to check, as an independent reader, what our code wrote.
Each consumer-group join costs ~session_timeout/2 on Tansu (3 s), so tests share joins.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from kafka import KafkaConsumer, TopicPartition

from stream.errors import SinkError, SourceError
from stream.event import MAX_MESSAGE_BYTES, Interaction, encode
from stream.kafka import (
    KafkaDeadLetter,
    KafkaSettings,
    KafkaSink,
    KafkaSource,
    ensure_topic,
    offsets_for_time,
    topic_id,
)
from stream.source import Batch, EventSource

T0 = 1_700_000_000_000


def event(n: int, **extra: object) -> bytes:
    return encode({"user": n, "item": f"i{n % 5}", "ts": T0 + n, "event_id": f"e{n}", **extra})


def produce(settings: KafkaSettings, topic: str, records: list[tuple[int, bytes]]) -> None:
    """Send (partition, value) pairs, timestamped T0 + their index."""
    sink = KafkaSink(settings, topic)
    for n, (partition, value) in enumerate(records):
        sink.send(value, key=b"k%d" % n, timestamp_ms=T0 + n, partition=partition)
    sink.close()


def drain(source: KafkaSource, want: int, max_events: int = 1000, limit_s: float = 20) -> Batch:
    """Poll until `want` events arrived (or the limit passed); merge the batches."""
    total = Batch()
    deadline = time.monotonic() + limit_s
    while len(total.events) < want and time.monotonic() < deadline:
        batch = source.poll(max_events, 0.5)
        total.events += batch.events
        total.offsets.update(batch.offsets)
        total.rejected += batch.rejected
    return total


def read_topic(settings: KafkaSettings, topic: str, partitions: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            records += batch
        ends = [consumer.highwater(tp) for tp in tps]
        if records and None not in ends and sum(ends) == len(records):
            break
    consumer.close()
    return records


def committed(settings: KafkaSettings, group: str, topic: str, partitions: int) -> dict:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group)
    found = {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    consumer.close()
    return found


def test_valid_events_pass_invalid_go_to_the_dead_letter_topic(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=2)
    invalid = [b"not json", b'{"user": 1}', event(900, weight=-1), b'{"user":"u","item":""}']
    records = [(n % 2, event(n)) for n in range(30)]
    records += [(0, bad) for bad in invalid[:2]] + [(1, bad) for bad in invalid[2:]]
    records += [(n % 2, encode({"user": n, "item": "i"})) for n in range(30, 40)]  # ts from Kafka
    produce(kafka_settings, topic, records)

    with KafkaSource(kafka_settings, topic, group=f"{topic}-g") as source:
        assert isinstance(source, EventSource)
        got = drain(source, 40)
        assert source.poll(100, 0.5).events == []
        assert source.lag() == {f"{topic}:0": 0, f"{topic}:1": 0}
        assert source.identity() == {f"kafka:{topic}": topic_id(kafka_settings, topic)}
        source.flush()

    assert sorted(int(e.user) for e in got.events) == list(range(40))
    assert got.rejected == 4
    assert got.offsets == {f"{topic}:0": 22, f"{topic}:1": 22}  # 20 valid + 2 invalid each
    no_ts = {e.user: e.ts for e in got.events if e.event_id is None}
    assert no_ts == {str(n): T0 + n + 4 for n in range(30, 40)}  # the record's timestamp

    letters = read_topic(kafka_settings, f"{topic}.dlq", partitions=2)
    assert sorted(r.value for r in letters) == sorted(invalid)
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["source_topic"] == topic.encode()
        partition, offset = int(headers["source_partition"]), int(headers["source_offset"])
        assert records_at(records, partition, offset) == letter.value
        assert headers["reason"]
    reasons = {r.value: dict(r.headers)["reason"].decode() for r in letters}
    assert reasons[b"not json"].startswith("not JSON")
    assert "missing required field `item`" in reasons[b'{"user": 1}']
    assert reasons[invalid[2]] == "weight must be finite and >= 0, got -1.0"
    assert reasons[invalid[3]].startswith("item must be a non-empty")


def records_at(records: list[tuple[int, bytes]], partition: int, offset: int) -> bytes:
    return [value for p, value in records if p == partition][offset]


@pytest.mark.slow
def test_resume_from_start_offsets_then_from_committed_offsets(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=2)
    produce(kafka_settings, topic, [(n % 2, event(n)) for n in range(30)])
    group = f"{topic}-g"

    with KafkaSource(kafka_settings, topic, group=group) as first:
        head = drain(first, 8, max_events=8)
        assert len(head.events) == 8
        lag = first.lag()  # known for the partitions fetched so far
        assert lag and all(lag[k] == 15 - head.offsets.get(k, 0) for k in lag)
        first.commit(head.offsets)
    assert committed(kafka_settings, group, topic, 2) == {
        int(key.rpartition(":")[2]): head.offsets.get(key) for key in (f"{topic}:0", f"{topic}:1")
    }

    # A checkpoint ahead of the committed offsets wins over them.
    checkpoint = {f"{topic}:0": 12, f"{topic}:1": 10}  # even users on 0, odd on 1
    with KafkaSource(kafka_settings, topic, group=group, start_offsets=checkpoint) as second:
        rest = drain(second, 8)
    assert sorted(int(e.user) for e in rest.events) == [21, 23, 24, 25, 26, 27, 28, 29]
    assert rest.offsets == {f"{topic}:0": 15, f"{topic}:1": 15}

    # Without start offsets, the group's committed offsets decide.
    with KafkaSource(kafka_settings, topic, group=group) as third:
        tail = drain(third, 22)
    seen = sorted(int(e.user) for e in head.events + tail.events)
    assert seen == list(range(30))


@pytest.mark.slow
def test_offsets_past_the_end_or_before_the_start_are_refused(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=1)
    produce(kafka_settings, topic, [(0, event(n)) for n in range(5)])
    key = f"{topic}:0"
    past_end = KafkaSource(kafka_settings, topic, f"{topic}-a", start_offsets={key: 99})
    with (
        past_end,
        pytest.raises(SourceError, match=f"{key}: next offset 99 .* past the partition's"),
    ):
        drain(past_end, 1, limit_s=8)
    # Tansu cannot delete records, so no log starts after 0 here; a negative offset takes
    # the same check against beginning_offsets().
    before_start = KafkaSource(kafka_settings, topic, f"{topic}-b", start_offsets={key: -3})
    with before_start, pytest.raises(SourceError, match=f"{key}: start offset -3 .* older than"):
        drain(before_start, 1, limit_s=8)


@pytest.mark.slow
def test_revoked_records_are_handed_over_and_nothing_is_read_twice(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=2)
    produce(kafka_settings, topic, [(n % 2, event(n)) for n in range(40)])
    group = f"{topic}-g"
    handed: list[Batch] = []

    def on_revoke(batch: Batch) -> None:
        handed.append(batch)
        first.commit(batch.offsets)  # allowed here: poll() is waiting on the rebalance

    first = KafkaSource(kafka_settings, topic, group, on_revoke=on_revoke)
    second_events: list[Interaction] = []
    stop = threading.Event()

    def run_second() -> None:
        with KafkaSource(kafka_settings, topic, group) as second:
            while not stop.is_set():
                second_events.extend(second.poll(1000, 0.3).events)

    joiner = threading.Timer(4.0, run_second)
    try:
        # Read everything into one long poll; a second member joins while it is pending.
        joiner.start()
        returned = first.poll(10_000, 10.0).events  # the handover comes at ~5 s
        assert [len(b.events) for b in handed][:1] == [40]
        assert handed[0].offsets == {f"{topic}:0": 20, f"{topic}:1": 20}
        assert committed(kafka_settings, group, topic, 2) == {0: 20, 1: 20}
        produce(kafka_settings, topic, [(n % 2, event(n)) for n in range(40, 60)])
        deadline = time.monotonic() + 10
        while len(returned) + len(second_events) < 20 and time.monotonic() < deadline:
            returned += first.poll(1000, 0.3).events
    finally:
        stop.set()
        joiner.join()
        first.close()
    later = sorted(int(e.user) for e in returned + second_events)
    assert later == list(range(40, 60))  # each new event once; none of the 40 again


def test_offsets_for_time_finds_the_first_record_at_or_after(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=2)
    produce(kafka_settings, topic, [(0 if n < 50 else 1, event(n)) for n in range(80)])
    key0, key1 = f"{topic}:0", f"{topic}:1"
    assert offsets_for_time(kafka_settings, topic, 0) == {key0: 0, key1: 0}
    assert offsets_for_time(kafka_settings, topic, T0 + 17) == {key0: 17, key1: 0}
    assert offsets_for_time(kafka_settings, topic, T0 + 60) == {key0: 50, key1: 10}
    assert offsets_for_time(kafka_settings, topic, T0 + 999) == {key0: 50, key1: 30}


def test_a_missing_topic_is_refused_not_created(kafka_settings: KafkaSettings, topic: str) -> None:
    with pytest.raises(SourceError, match=f"topic '{topic}' does not exist.*ensure_topic"):
        KafkaSource(kafka_settings, topic, group="g")
    assert topic_id(kafka_settings, topic) is None
    created = ensure_topic(kafka_settings, topic, partitions=3)
    assert (
        ensure_topic(kafka_settings, topic, partitions=3)
        == created
        == topic_id(kafka_settings, topic)
    )


def test_sink_refuses_oversize_records_and_unknown_options(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    ensure_topic(kafka_settings, topic, partitions=1)
    sink = KafkaSink(kafka_settings, topic)
    with pytest.raises(SinkError, match=f"2000000-byte record to '{topic}'"):
        sink.send(b"x" * 2_000_000)
    sink.close()
    bad = KafkaSettings(kafka_settings.bootstrap, client_options={"no_such_option": 1})
    with pytest.raises(SourceError, match="unknown Kafka client option 'no_such_option'"):
        KafkaSink(bad, topic)


def test_dead_letters_too_big_for_the_topic_are_truncated(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    dead = KafkaDeadLetter(kafka_settings, topic)
    real, sent = dead._sink, []
    real.close()
    dead._sink = SimpleNamespace(send=lambda *args: sent.append(args))  # type: ignore[assignment]
    huge = SimpleNamespace(topic="src", partition=2, offset=7, timestamp=5, key=b"k", value=b"x")
    dead.send(huge, "fine")
    huge.value = b"y" * 2_000_000
    dead.send(huge, "message is 2000000 bytes, over the 65536-byte limit")
    (small_value, key, ts, headers), (big_value, _, _, big_headers) = sent
    assert (small_value, key, ts) == (b"x", b"k", 5)
    assert headers == [
        ("reason", b"fine"),
        ("source_topic", b"src"),
        ("source_partition", b"2"),
        ("source_offset", b"7"),
    ]
    assert big_value == b"y" * MAX_MESSAGE_BYTES
    assert big_headers[-1] == ("truncated_from", b"2000000")
