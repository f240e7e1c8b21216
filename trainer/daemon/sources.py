"""The trainer's event source, from its `--source` URI: a JSONL log or a Kafka topic."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from stream import Batch, EventSource, parse_uri
from trainer.daemon.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass
class Opened:
    source: EventSource
    offsets: dict[str, int]  # where to start: the checkpoint's, or --from-time's
    end_offsets: Callable[[], dict[str, int]] | None  # the watchdog's own view of the log


def open_source(
    s: TrainSettings,
    offsets: dict[str, int],
    on_revoke: Callable[[Batch], None],
    resuming: bool,
) -> Opened:
    """Open `s.source` at `offsets`. `resuming` (from a checkpoint): a Kafka partition the
    checkpoint does not name starts at the log start, never at a committed offset that a later
    checkpoint may have moved past the state (see `stream.kafka.KafkaSource`)."""
    uri = parse_uri(s.source)
    if uri.scheme == "file":
        from stream.files import FileSource

        dead = s.dead_letter or s.checkpoint_dir / "dead-letter.jsonl"
        source = FileSource(uri.path, dead_letter_path=dead, start_offsets=offsets)
        return Opened(source, offsets, None)
    from stream.kafka import EndOffsets, KafkaSettings, KafkaSource, ensure_topic, offsets_for_time

    ks = KafkaSettings(
        bootstrap=uri.bootstrap,
        session_timeout_ms=s.session_timeout_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms,
        max_poll_interval_ms=s.max_poll_interval_ms,
        client_options=MappingProxyType(dict(s.kafka_options)),
    )
    ensure_topic(ks, uri.topic, s.partitions)
    if s.from_time_ms is not None and not offsets:
        offsets = offsets_for_time(ks, uri.topic, s.from_time_ms)
        log.info("--from-time: starting at offsets %s", offsets)
    kafka = KafkaSource(
        ks,
        uri.topic,
        s.group,
        start_offsets=offsets,
        on_revoke=on_revoke,
        dead_letter_topic=f"{uri.topic}.dlq",
        trust_committed=not resuming,
    )
    return Opened(kafka, offsets, EndOffsets(ks, uri.topic))
