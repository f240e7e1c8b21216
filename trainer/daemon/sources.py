"""The trainer's event source, from its `--source` URI: a log file (JSONL, CSV, TSV, Parquet,
read as `TrainSettings.log_format` says) or a Kafka topic.

A Kafka source waits for its broker first (`--connect-timeout`): a trainer may start before it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from stream import Batch, EventSource, parse_uri
from trainer.daemon.settings import TrainSettings
from trainer.daemon.waiting import wait_for

if TYPE_CHECKING:
    from stream.kafka import KafkaSettings

log = logging.getLogger(__name__)

ATTEMPT_S = 10.0  # one try to reach the broker waits no longer for its bootstrap


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
    should_stop: Callable[[], bool] = lambda: False,
) -> Opened:
    """Open `s.source` at `offsets`. `resuming` (from a checkpoint): a Kafka partition the
    checkpoint does not name starts at the log start, never at a committed offset that a later
    checkpoint may have moved past the state (see `stream.kafka.KafkaSource`). Waits up to
    `s.connect_timeout_s` for the broker; `should_stop` ends the wait (`trainer.errors.Stopped`)."""
    uri = parse_uri(s.source)
    if uri.scheme == "file":
        from stream.files import FileSource

        dead = s.dead_letter or s.checkpoint_dir / "dead-letter.jsonl"
        source = FileSource(
            uri.path, dead_letter_path=dead, start_offsets=offsets, log_format=s.log_format
        )
        return Opened(source, offsets, None)
    from stream.kafka import EndOffsets, KafkaSource, ensure_topic, offsets_for_time

    ks = kafka_settings(s, uri.bootstrap)
    wait_for(
        lambda left: ensure_topic(_bounded(ks, left), uri.topic, s.partitions),
        s.connect_timeout_s,
        should_stop,
        setting="--source",
    )
    if s.from_time_ms is not None and not offsets:
        offsets = offsets_for_time(ks, uri.topic, s.from_time_ms)
        log.info("--from-time: starting at offsets %s", offsets)
    options: dict[str, Any] = {
        "start_offsets": offsets,
        "dead_letter_topic": f"{uri.topic}.dlq",
        "trust_committed": not resuming,
    }
    kafka: EventSource
    if s.source_process:  # fetching and decoding in a process of their own
        from stream.kafka import build_source
        from stream.process import ProcessSource

        build = functools.partial(build_source, ks.plain(), uri.topic, s.group, **options)
        kafka = ProcessSource(build, (), s.batch_size, s.poll_timeout_s, on_revoke=on_revoke)
    else:
        kafka = KafkaSource(ks, uri.topic, s.group, on_revoke=on_revoke, **options)
    return Opened(kafka, offsets, EndOffsets(ks, uri.topic))


def _bounded(ks: KafkaSettings, left_s: float) -> KafkaSettings:
    """`ks` with a bootstrap timeout of at most ATTEMPT_S and `left_s` (unless one was set)."""
    ms = max(1, int(1000 * min(ATTEMPT_S, left_s)))
    return dataclasses.replace(
        ks, client_options=MappingProxyType({"bootstrap_timeout_ms": ms, **ks.client_options})
    )


def kafka_settings(s: TrainSettings, bootstrap: str) -> KafkaSettings:
    """The Kafka client settings of a trainer (or of a rank of a group)."""
    from stream.kafka import KafkaSettings

    return KafkaSettings(
        bootstrap=bootstrap,
        session_timeout_ms=s.session_timeout_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms,
        max_poll_interval_ms=s.max_poll_interval_ms,
        client_options=MappingProxyType(dict(s.kafka_options)),
    )
