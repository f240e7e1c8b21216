"""Fault scenarios 3 and 6: a broker frozen past the session timeout, and 1% garbage.

The frozen broker is one of the test's own (SIGSTOP stops every client of it, not just ours).
"""

from __future__ import annotations

import random
import signal
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from stream.broker import LocalBroker
from stream.event import MAX_ID_BYTES, MAX_MESSAGE_BYTES, encode
from stream.kafka import KafkaSink
from tests.faultkit import (
    PARTITIONS,
    T0,
    Proc,
    Producer,
    applied_counts,
    event,
    figure,
    log_counts,
    train_args,
    verdict,
    wait_until,
)

pytestmark = pytest.mark.slow

SESSION_TIMEOUT_S = 3.0  # faultkit.FAST_GROUP


def test_broker_frozen_past_the_session_timeout_recovers_by_itself(tmp_path):
    with LocalBroker(log_path=str(tmp_path / "tansu.log")) as broker:
        topic = "frozen"
        producer = Producer(broker.bootstrap, topic)
        producer.stream(1000)
        ckpt_dir = tmp_path / "ckpt"
        args = train_args(broker.bootstrap, topic, "g", ckpt_dir, "--checkpoint-every", "1")
        proc = Proc(args, tmp_path / "trainer.log")
        try:
            wait_until(lambda: proc.metric("recstream_events_trained_total") > 2000, 60, "load")
            broker.freeze()
            time.sleep(2 * SESSION_TIMEOUT_S)  # the fault itself: a broker that answers nothing
            at_thaw = proc.metric("recstream_events_trained_total")
            broker.thaw()
            thawed = time.monotonic()
            wait_until(
                lambda: proc.metric("recstream_events_trained_total") > at_thaw + 500,
                60,
                "training to go on after the thaw",
            )
            recovered = time.monotonic() - thawed
            producer.stop()
            wait_until(lambda: proc.caught_up(applied=producer.next), 60, "the trainer to catch up")
            caught_up = time.monotonic() - thawed
            assert proc.alive()
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.log()[-3000:]
        finally:
            producer.stop()
            proc.kill()
        _, applied = applied_counts(ckpt_dir)
        lost, doubled = verdict(log_counts(broker.bootstrap, topic), applied)
    figure(f"recovery after a {2 * SESSION_TIMEOUT_S:.0f} s freeze (thaw to training)", recovered)
    figure("thaw to caught up (lag 0 on every partition)", caught_up)
    assert (lost, doubled) == (0, 0)


def _garbage(n: int) -> tuple[bytes, str]:
    """The n-th bad record and the reason the trainer must give for it."""
    kind = n % 7
    if kind == 0:
        return b"not json at all %d" % n, "not JSON"
    if kind == 1:
        return b'{"user": "u1", "item": "\xff\xfe%d", "ts": 5}' % n, "not UTF-8"
    if kind == 2:  # NaN is no JSON number: a NaN weight cannot even be decoded
        return b'{"user": "u1", "item": "i1", "ts": 5, "weight": NaN, "event_id": "b%d"}' % n, (
            "not JSON"
        )
    if kind == 6:  # a weight beyond float range would be inf
        return b'{"user": "u1", "item": "i1", "ts": 5, "weight": 1e999, "event_id": "b%d"}' % n, (
            "out of range"
        )
    if kind == 3:
        long_id = "u" * (MAX_ID_BYTES + 1)
        return encode({"user": long_id, "item": "i1", "ts": T0, "event_id": f"b{n}"}), "bytes"
    if kind == 4:
        far = T0 + 100 * 365 * 86_400_000  # a century ahead
        return encode({"user": "u1", "item": "i1", "ts": far, "event_id": f"b{n}"}), "far-future"
    pad = "x" * (MAX_MESSAGE_BYTES + 10)
    oversize = {"user": "u1", "item": "i1", "ts": T0, "event_id": f"b{n}", "context": {"pad": pad}}
    return encode(oversize), "over the"


def test_one_percent_garbage_goes_to_the_dead_letter_topic(kafka_bootstrap, topic, tmp_path):
    valid, bad = 20_000, 200
    producer = Producer(kafka_bootstrap, topic)
    records = [(event(n), f"u{n % 211}".encode()) for n in range(valid)]
    garbage = [_garbage(n) for n in range(bad)]
    rng = random.Random(5)
    for raw, _ in garbage:
        records.insert(rng.randrange(len(records)), (raw, None))
    sink = KafkaSink(producer.settings, topic)
    for value, key in records:
        sink.send(value, key=key)
    sink.close()

    ckpt_dir = tmp_path / "ckpt"
    args = train_args(kafka_bootstrap, topic, f"g-{topic}", ckpt_dir, "--stop-when-idle", "2")
    proc = Proc(args, tmp_path / "trainer.log")
    assert proc.wait(120) == 0, proc.log()[-3000:]
    summary = proc.summary()

    dead = _read_all(kafka_bootstrap, f"{topic}.dlq", expect=bad)
    reasons = [dict(r.headers)["reason"].decode() for r in dead]
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    figure("dead letters", len(dead), "records")
    assert len(dead) == bad and summary["events_rejected"] == bad
    assert summary["events_applied"] == valid and sum(applied.values()) == valid
    expected = dict(garbage)  # raw bytes -> what the reason must say
    assert sorted(r.value for r in dead) == sorted(expected)  # each one, unchanged
    for record, reason in zip(dead, reasons, strict=True):
        assert expected[record.value] in reason, (expected[record.value], reason)
    assert (lost, doubled) == (0, 0)


def _read_all(bootstrap: str, topic: str, expect: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list = []
    deadline = time.monotonic() + 30
    while len(records) < expect and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            records += batch
    records += [r for b in consumer.poll(timeout_ms=500).values() for r in b]  # none extra
    consumer.close()
    return records
