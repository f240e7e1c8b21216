"""Records out: `KafkaSink` (a producer whose failures are raised, never lost) and
`KafkaDeadLetter` (rejected records, unchanged, with the reason in their headers)."""

from __future__ import annotations

import threading
from typing import Any

import kafka.errors as kerr
from kafka import KafkaProducer

from stream.errors import SinkError
from stream.event import MAX_MESSAGE_BYTES
from stream.kafka.settings import TOPIC_MAX_MESSAGE_BYTES, KafkaSettings, connect

_DEAD_LETTER_MAX_VALUE = TOPIC_MAX_MESSAGE_BYTES - 64 * 1024  # room for key and headers


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
        self._producer = connect(
            settings,
            KafkaProducer,
            acks="all",
            compression_type="lz4",
            linger_ms=20,
            batch_size=256 * 1024,
            max_request_size=TOPIC_MAX_MESSAGE_BYTES,
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
