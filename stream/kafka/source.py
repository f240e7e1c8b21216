"""`KafkaSource`: one topic read by a consumer group that commits by hand (an `EventSource`).

Works on Apache Kafka and on the local Tansu broker, whose quirks decide some choices here:
lag comes from ``highwater()`` after a fetch (``end_offsets()`` can be wrong), and stored
offsets are checked against the log start and the high watermark by hand (no
OFFSET_OUT_OF_RANGE). Rebalances reach the source through `stream.kafka.rebalance`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import kafka.errors as kerr
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from stream.errors import InvalidEvent, SinkError, SourceError
from stream.event import Decoder, Interaction
from stream.kafka.admin import describe_topic, ensure_topic, topic_id
from stream.kafka.rebalance import Rebalance, Work
from stream.kafka.settings import KafkaSettings, connect, key_of
from stream.kafka.sink import KafkaDeadLetter
from stream.ledger import PartitionLedger
from stream.source import Batch

log = logging.getLogger(__name__)

_MEMBERSHIP_ERRORS = (
    kerr.CommitFailedError,
    kerr.RebalanceInProgressError,
    kerr.IllegalGenerationError,
    kerr.UnknownMemberIdError,
)


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
        partitions: list[int] | None = None,
    ) -> None:
        """`partitions`: read exactly these (assigned, no group membership: one rank of a
        group of trainers, `trainer.daemon.group`); commits still go to `group`."""
        info = describe_topic(settings, topic)
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
            self._consumer = connect(
                settings,
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
            if partitions is None:
                self._consumer.subscribe([topic], listener=Rebalance(self, self._consumer))
            else:
                tps = {TopicPartition(topic, p) for p in partitions}
                self._consumer.assign(sorted(tps))
                self._assign(tps)
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

    # The rebalance bridge (`stream.kafka.rebalance`) calls these three on kafka-python's IO
    # thread, and runs the work the first two return on a helper thread while `poll` waits.

    def _on_assigned(self, assigned: set[TopicPartition]) -> Work:
        """The work of seeking each assigned partition to its start (blocking calls)."""
        return self._guard(lambda: self._assign(assigned))

    def _on_revoked(self, revoked: set[TopicPartition], lost: bool) -> Work | None:
        """Take the partitions' pending records out of the next batch; return their hand-over
        to `on_revoke`, or None if there is none (no callback, closing, or nothing revoked)."""
        if lost:
            self._owned -= revoked  # commits for them would be refused: the group moved on
        callback = None if self._closing else self._on_revoke
        batch = self._ledger.revoke({self._key(tp) for tp in revoked}, callback is not None)
        if callback is None or not revoked:
            return None
        return self._guard(lambda: callback(batch))

    def _on_released(self, released: set[TopicPartition]) -> None:
        """The partitions have moved (after their hand-over, if any): stop committing them."""
        self._owned -= released

    def _guard(self, work: Work) -> Work:
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
