"""Kafka in and out, through kafka-python (>= 3.0; the only module that imports it).

Works on Apache Kafka and on the local Tansu broker, whose quirks decide some choices here:
lag comes from ``highwater()`` after a fetch (``end_offsets()`` can be wrong), a time is found by
binary search over fetched timestamps (``offsets_for_times()`` can be wrong), stored offsets are
checked against the log start and the high watermark by hand (no OFFSET_OUT_OF_RANGE), and
topics are created explicitly with a known partition count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import kafka.errors as kerr
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata, TopicPartition

try:
    from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
except ImportError as e:  # kafka-python 2.x runs listeners differently
    raise ImportError(
        "stream.kafka needs kafka-python >= 3.0: pip install 'kafka-python>=3'"
    ) from e

from stream.errors import InvalidEvent, SinkError, SourceError
from stream.event import MAX_MESSAGE_BYTES, Decoder, Interaction
from stream.ledger import PartitionLedger
from stream.source import Batch
from stream.timesearch import first_offset_at

log = logging.getLogger(__name__)

# Room for a batch of small events around one event of MAX_MESSAGE_BYTES; larger records are
# refused by the producer and, on Apache Kafka, by the topic, so the decoder sees none.
TOPIC_MAX_MESSAGE_BYTES = 1_048_576
_DEAD_LETTER_MAX_VALUE = TOPIC_MAX_MESSAGE_BYTES - 64 * 1024  # room for key and headers
_MEMBERSHIP_ERRORS = (
    kerr.CommitFailedError,
    kerr.RebalanceInProgressError,
    kerr.IllegalGenerationError,
    kerr.UnknownMemberIdError,
)


@dataclass(frozen=True)
class KafkaSettings:
    """Connection and consumer settings; `client_options` go to every client that knows them
    (``security_protocol``, ``sasl_*``, ``ssl_*``, ...)."""

    bootstrap: str
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 300_000
    check_crcs: bool = True
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int = 1_048_576 * 4
    commit_timeout_ms: int = 10_000  # a commit waits no longer (the checkpoint holds the offsets)
    close_timeout_ms: int = 5_000  # leaving the group on close waits no longer
    client_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def config(self, client: type, **fixed: Any) -> dict[str, Any]:
        """Keyword arguments for `client`: `fixed`, then the `client_options` it knows."""
        known = client.DEFAULT_CONFIG  # type: ignore[attr-defined]
        for name in self.client_options:
            if not any(name in c.DEFAULT_CONFIG for c in (KafkaConsumer, KafkaProducer)):
                raise SourceError(
                    f"unknown Kafka client option {name!r}; use kafka-python's names,"
                    " e.g. security_protocol, sasl_mechanism, ssl_cafile"
                )
        options = {k: v for k, v in self.client_options.items() if k in known}
        return {"bootstrap_servers": self.bootstrap, "client_id": "recstream", **fixed, **options}


def key_of(tp: TopicPartition) -> str:
    """The position key of a partition: ``"<topic>:<partition>"``."""
    return f"{tp.topic}:{tp.partition}"


def _describe(settings: KafkaSettings, topic: str) -> dict[str, Any] | None:
    admin = KafkaAdminClient(**settings.config(KafkaAdminClient))
    try:
        (info,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if info["error_code"] == kerr.UnknownTopicOrPartitionError.errno:
        return None
    if info["error_code"]:
        raise SourceError(f"cannot describe topic {topic!r}: {kerr.for_code(info['error_code'])}")
    return info


def topic_id(settings: KafkaSettings, topic: str) -> str | None:
    """The topic's id (new each time the topic is created), or None if it does not exist."""
    info = _describe(settings, topic)
    return None if info is None else str(info["topic_id"])


def ensure_topic(settings: KafkaSettings, topic: str, partitions: int = 4) -> str:
    """Create `topic` with `partitions` partitions unless it exists; return its topic_id."""
    admin = KafkaAdminClient(**settings.config(KafkaAdminClient))
    config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}
    try:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
    except kerr.TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    found = topic_id(settings, topic)
    if found is None:
        raise SourceError(f"topic {topic!r} was created on {settings.bootstrap} but is not visible")
    return found


class KafkaSink:
    """Producer for replaying a log into a topic; a failed send is raised by `flush`, never lost.

    Create the topic first (`ensure_topic`): producing to a missing topic may auto-create it
    with the broker's default partition count.
    """

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.sent = 0
        self._failed = 0
        self._first_error: BaseException | None = None
        self._lock = threading.Lock()
        self._producer = KafkaProducer(
            **settings.config(
                KafkaProducer,
                acks="all",
                compression_type="lz4",
                linger_ms=20,
                batch_size=256 * 1024,
                max_request_size=TOPIC_MAX_MESSAGE_BYTES,
            )
        )

    def send(
        self,
        value: bytes,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (partitioned by `key` unless `partition` is given); raises
        `SinkError` at once if it can never be sent (e.g. too big)."""
        try:
            future = self._producer.send(
                self.topic,
                value=value,
                key=key,
                headers=headers,
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
        except kerr.KafkaError as e:
            raise SinkError(f"cannot send a {len(value)}-byte record to {self.topic!r}: {e}") from e
        future.add_errback(self._on_error)
        self.sent += 1

    def _on_error(self, error: BaseException) -> None:
        with self._lock:
            self._failed += 1
            if self._first_error is None:
                self._first_error = error

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued record is acknowledged; raise `SinkError` if any failed."""
        try:
            self._producer.flush(timeout=timeout_s)
        except kerr.KafkaError as e:
            raise SinkError(f"flushing records to {self.topic!r} failed: {e}") from e
        with self._lock:
            failed, error = self._failed, self._first_error
            self._failed, self._first_error = 0, None
        if failed:
            raise SinkError(
                f"{failed} record(s) to {self.topic!r} were not written; first error: {error}"
            ) from error

    def close(self) -> None:
        """Flush, then release the connection (flush errors are raised after closing)."""
        try:
            self.flush()
        finally:
            self._producer.close()


class KafkaDeadLetter:
    """Sends rejected records to the dead-letter topic, unchanged, with the reason in headers."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._sink = KafkaSink(settings, topic)

    def send(self, record: Any, reason: str) -> None:
        """Forward `record` (a kafka-python ConsumerRecord) with headers naming its origin.

        A value too big for the dead-letter topic is cut to MAX_MESSAGE_BYTES and carries a
        ``truncated_from`` header with its size.
        """
        headers = [
            ("reason", reason.encode()),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        value = record.value or b""
        if len(value) > _DEAD_LETTER_MAX_VALUE:  # brokers that skip size checks let these in
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:MAX_MESSAGE_BYTES]
        timestamp = record.timestamp if record.timestamp >= 0 else None
        self._sink.send(value, record.key, timestamp, headers)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        self._sink.close()


async def _off_loop(consumer: KafkaConsumer, work: Callable[[], None]) -> None:
    """Run blocking `work` on a helper thread while the consumer's IO loop keeps heartbeating.

    Rebalance listeners run on kafka-python's IO thread, where blocking consumer calls
    (``committed``, ``commit``, ...) are refused; the thread that called ``poll`` is blocked
    until the rebalance ends, so `work` has the source to itself.
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="recstream-rebalance", daemon=True).start()
    while not done.is_set():
        await consumer._net.sleep(0.002)
    if failure:
        raise failure[0]


class _Rebalance(AsyncConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        source = self._source
        await _off_loop(source._consumer, source._guard(lambda: source._assign(assigned)))

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        source = self._source
        batch = source._revoke(revoked)
        if source._on_revoke is not None and not source._closing and revoked:
            callback = source._on_revoke
            await _off_loop(source._consumer, source._guard(lambda: callback(batch)))
        source._owned -= revoked

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._source._owned -= lost  # commits for them would be refused: the group moved on
        await self.on_partitions_revoked(lost)


class KafkaSource:
    """An `EventSource` over one topic, read by a consumer group that commits by hand.

    A partition starts at the next offset this source handed out for it (at first: from
    `start_offsets`, the trainer's checkpoint), else the group's committed offset (unless
    `trust_committed` is False), else the log start. The offset a partition starts at is
    reported in the next batch's `offsets` even before any record of it arrives, so a checkpoint
    names every partition its state has read from. An owner that resumes from a checkpoint
    passes ``trust_committed=False``: a partition its checkpoint does not name has contributed
    nothing to its state, so it must start at the log start even if a later checkpoint (one
    that turned out corrupt) committed an offset for it. An offset older than the log start, or
    past the high watermark, raises `SourceError`.
    Invalid records go to the dead-letter topic (``<topic>.dlq`` unless named) with the reason
    in their headers. On revocation, the records decoded but not yet returned are handed to
    `on_revoke` as a `Batch`, on a helper thread while `poll` waits, so the owner can train on
    them, checkpoint and `commit` before the partition moves; without `on_revoke` they are
    dropped, and the partition's next owner reads them again.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group: str,
        start_offsets: dict[str, int] | None = None,
        on_revoke: Callable[[Batch], None] | None = None,
        decoder: Decoder | None = None,
        dead_letter_topic: str | None = None,
        trust_committed: bool = True,
    ) -> None:
        info = _describe(settings, topic)
        if info is None:
            raise SourceError(
                f"topic {topic!r} does not exist on {settings.bootstrap}; create it first with"
                f" stream.kafka.ensure_topic(settings, {topic!r}, partitions=N)"
                " (subscribing would auto-create it with the broker's default partition count)"
            )
        self.topic = topic
        self._settings = settings
        self._topic_id = str(info["topic_id"])
        self._decode = (decoder or Decoder()).decode
        self._on_revoke = on_revoke
        self._trust_committed = trust_committed
        self._closing = False
        self._error: BaseException | None = None
        mine = {k: v for k, v in (start_offsets or {}).items() if k.rpartition(":")[0] == topic}
        self._ledger = PartitionLedger(mine)
        self._keys: dict[TopicPartition, str] = {}
        self._owned: set[TopicPartition] = set()
        dead_letter_topic = dead_letter_topic or f"{topic}.dlq"
        ensure_topic(settings, dead_letter_topic, partitions=len(info["partitions"]))
        self._dead = KafkaDeadLetter(settings, dead_letter_topic)
        try:
            self._consumer = KafkaConsumer(
                **settings.config(
                    KafkaConsumer,
                    group_id=group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    allow_auto_create_topics=False,
                    session_timeout_ms=settings.session_timeout_ms,
                    heartbeat_interval_ms=settings.heartbeat_interval_ms,
                    max_poll_interval_ms=settings.max_poll_interval_ms,
                    check_crcs=settings.check_crcs,
                    fetch_max_bytes=settings.fetch_max_bytes,
                    max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
                )
            )
            self._consumer.subscribe([topic], listener=_Rebalance(self))
        except BaseException:
            self._dead.close()
            raise

    def poll(self, max_events: int, timeout_s: float) -> Batch:
        """Up to `max_events` valid events; returns when they are ready or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        consumer, ledger = self._consumer, self._ledger
        while ledger.pending < max_events:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                records = consumer.poll(timeout_ms=wait_ms, max_records=max_events - ledger.pending)
            except kerr.KafkaError as e:
                error, self._error = self._error, None
                if error is not None:
                    raise error from e  # raised in a rebalance callback, wrapped by kafka-python
                raise SourceError(f"polling {self.topic!r} failed: {e}") from e
            for tp, recs in records.items():
                self._take(tp, recs)
            self._check_watermarks()
            if wait_ms == 0:
                break
        return ledger.drain()

    def _take(self, tp: TopicPartition, recs: list[Any]) -> None:
        decode = self._decode
        events: list[Interaction] = []
        append = events.append
        bad = 0
        for record in recs:
            try:
                append(decode(record.value, record.timestamp))
            except InvalidEvent as e:
                bad += 1
                self._dead.send(record, e.reason)
            except TypeError:
                if record.value is not None:
                    raise
                bad += 1
                self._dead.send(record, "record has no value (a tombstone)")
        self._ledger.take(self._key(tp), recs[0].offset, recs[-1].offset + 1, events, bad)

    def _check_watermarks(self) -> None:
        highwater = self._consumer.highwater
        for tp in self._owned:
            key = self._key(tp)
            position, end = self._ledger.positions.get(key), highwater(tp)
            if position is None or end is None or position <= end:
                continue
            problem = (
                f"{key}: next offset {position} ({self._ledger.origins[key]}) is past the"
                f" partition's end, offset {end}"
            )
            try:
                now = topic_id(self._settings, self.topic)
            except kerr.KafkaError:
                now = None
            if now is not None and now != self._topic_id:
                raise SourceError(
                    f"{problem}: the topic was re-created (topic_id {self._topic_id} is now"
                    f" {now}), so the offsets belong to the old topic; start from a fresh"
                    " checkpoint"
                )
            raise SourceError(
                f"{problem}; pass start offsets <= {end}, or resume from a checkpoint made on"
                " this topic"
            )

    def _key(self, tp: TopicPartition) -> str:
        key = self._keys.get(tp)
        if key is None:
            key = self._keys[tp] = key_of(tp)
        return key

    def _guard(self, work: Callable[[], None]) -> Callable[[], None]:
        """Keep an exception of a rebalance callback, for poll() to raise as it was."""

        def run() -> None:
            try:
                work()
            except BaseException as e:
                self._error = e
                raise

        return run

    def _assign(self, assigned: set[TopicPartition]) -> None:
        tps = sorted(assigned)
        consumer = self._consumer
        starts = consumer.beginning_offsets(tps)
        for tp in tps:
            key = self._key(tp)
            offset, origin = self._ledger.resume_point(key), "the checkpoint or the last batch"
            if offset is None and self._trust_committed:
                offset, origin = consumer.committed(tp), "the group's committed offset"
            if offset is None:
                offset, origin = starts[tp], "the log start"
            if offset < starts[tp]:
                raise SourceError(
                    f"{key}: start offset {offset} (from {origin}) is older than the log start"
                    f" {starts[tp]}; the records in between were deleted (retention). Start from"
                    f" a fresh checkpoint, or pass start offsets >= {starts[tp]} to accept the gap"
                )
            consumer.seek(tp, offset)
            self._ledger.start(key, offset, f"from {origin}")
            if self._ledger.resume_point(key) is None:  # report the start with the next batch
                self._ledger.take(key, offset, offset, [], 0)
            self._owned.add(tp)
            log.info("%s: reading from offset %d (%s)", key, offset, origin)

    def _revoke(self, revoked: set[TopicPartition]) -> Batch:
        handed_over = self._on_revoke is not None and not self._closing
        return self._ledger.revoke({self._key(tp) for tp in revoked}, handed_over)

    def flush(self) -> None:
        """Wait for the dead letters sent so far; raise `SinkError` if any was not written."""
        self._dead.flush()

    def commit(self, offsets: dict[str, int]) -> None:
        """Commit `offsets` for the partitions this consumer owns now; others are skipped."""
        commits = {}
        for tp in self._owned:
            offset = offsets.get(self._key(tp))
            if offset is not None:
                commits[tp] = OffsetAndMetadata(offset, "", -1)
        if not commits:
            return
        try:
            self._consumer.commit(commits, timeout_ms=self._settings.commit_timeout_ms)
        except _MEMBERSHIP_ERRORS as e:
            # The checkpoint holds the offsets; committed ones serve monitoring and a new
            # group member, so a commit refused after a rebalance is not fatal.
            log.warning("commit of %s skipped, the group has rebalanced: %s", commits, e)
        except kerr.KafkaError as e:
            raise SourceError(f"committing offsets of {self.topic!r} failed: {e}") from e

    def lag(self) -> dict[str, int]:
        """``high watermark - next offset`` per owned partition whose high watermark is known."""
        highwater = self._consumer.highwater
        lag = {}
        for tp in self._owned:
            key = self._key(tp)
            position, end = self._ledger.positions.get(key), highwater(tp)
            if position is not None and end is not None:
                lag[key] = max(0, end - position)
        return lag

    def ready(self) -> bool:
        """True once the group gave this consumer partitions (a join takes seconds)."""
        return bool(self._owned)

    def assigned(self) -> list[str]:
        """Position keys of the partitions this consumer owns now."""
        return sorted(self._key(tp) for tp in self._owned)

    def identity(self) -> dict[str, str]:
        """``{"kafka:<topic>": topic_id}``: a re-created topic gets a new id."""
        return {f"kafka:{self.topic}": self._topic_id}

    def close(self) -> None:
        """Leave the group (without calling `on_revoke`) and flush the dead letters."""
        if self._closing:
            return
        self._closing = True
        try:
            self._consumer.close(timeout_ms=self._settings.close_timeout_ms)
        finally:
            try:
                self._dead.close()
            except SinkError as e:
                log.error("dead letters of %s were lost at close: %s", self.topic, e)

    def __enter__(self) -> KafkaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    info = _describe(settings, topic)
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
