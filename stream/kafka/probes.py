"""Looking at a topic without joining its group: `EndOffsets` (is the log growing?) and
`offsets_for_time` (where does a time start?).

Both read with a consumer of their own (no group id), so they never disturb the trainer's
group. On the local Tansu broker ``end_offsets()`` and ``offsets_for_times()`` answer wrongly;
these probes use only what every broker gets right (growth, fetched record timestamps).
"""

from __future__ import annotations

import time
from typing import Any

import kafka.errors as kerr
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from stream.errors import SourceError
from stream.kafka.admin import describe_topic
from stream.kafka.settings import KafkaSettings, key_of
from stream.timesearch import first_offset_at


class EndOffsets:
    """A topic's end offsets, read with a client of its own (no group), for a watchdog thread.

    The trainer's consumer belongs to its poll thread; this separate client lets another thread
    see the log grow even while that loop is stuck. Only growth is meaningful: on the local Tansu
    broker ``end_offsets()`` answers the last batch's base offset + 1, which grows as records
    arrive but is not the high watermark (lag comes from ``KafkaSource.lag()``).
    """

    def __init__(self, settings: KafkaSettings, topic: str, timeout_ms: int = 5000) -> None:
        self.topic = topic
        self._timeout_ms = timeout_ms
        self._consumer = KafkaConsumer(
            **settings.config(
                KafkaConsumer,
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=max(timeout_ms, 1000),
            )
        )

    def __call__(self) -> dict[str, int]:
        """``{"<topic>:<partition>": end offset}``; raises `SourceError` if the broker is away."""
        try:
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            ends = self._consumer.end_offsets(tps, timeout_ms=self._timeout_ms) if tps else {}
        except kerr.KafkaError as e:
            raise SourceError(f"reading the end offsets of {self.topic!r} failed: {e}") from e
        return {key_of(tp): int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        self._consumer.close()


def offsets_for_time(
    settings: KafkaSettings, topic: str, ts_ms: int, timeout_s: float = 30.0
) -> dict[str, int]:
    """Per partition, the first offset whose record timestamp is >= `ts_ms` (else the end).

    A portable ``offsets_for_times()``: a binary search over the timestamps of fetched records
    (`stream.timesearch`), a few small fetches per partition. It assumes timestamps are roughly
    non-decreasing within a partition (records produced in time order, or LogAppendTime).
    """
    info = describe_topic(settings, topic)
    if info is None:
        raise SourceError(f"topic {topic!r} does not exist on {settings.bootstrap}")
    consumer = KafkaConsumer(
        **settings.config(
            KafkaConsumer,
            group_id=None,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            max_partition_fetch_bytes=64 * 1024,
            fetch_max_wait_ms=100,
        )
    )
    deadline = time.monotonic() + timeout_s
    try:
        offsets = {}
        for partition in sorted(p["partition_index"] for p in info["partitions"]):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            start = consumer.beginning_offsets([tp])[tp]

            def read(offset: int, tp: TopicPartition = tp) -> list[tuple[int, int]]:
                return [(r.offset, r.timestamp) for r in _read(consumer, tp, offset, deadline)]

            read(start)  # the high watermark arrives with the first fetch
            end = consumer.highwater(tp)
            if end is None:
                raise SourceError(f"{key_of(tp)}: the broker sent no high watermark")
            offsets[key_of(tp)] = first_offset_at(read, start, end, ts_ms)
        return offsets
    finally:
        consumer.close()


def _read(consumer: KafkaConsumer, tp: TopicPartition, offset: int, deadline: float) -> list[Any]:
    """The records of one fetch from `offset` on, or [] at the end of the partition."""
    consumer.seek(tp, offset)
    while True:
        records = consumer.poll(timeout_ms=100, max_records=1000).get(tp, [])
        if records:
            return records
        end = consumer.highwater(tp)
        if end is not None and offset >= end:
            return []
        if time.monotonic() > deadline:
            raise SourceError(f"{key_of(tp)}: no record fetched at offset {offset} in time")
