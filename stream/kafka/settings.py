"""How to reach Kafka: `KafkaSettings` (shared by every client here) and partition keys.

A partition's position key, ``"<topic>:<partition>"`` (`key_of`), is how sources, checkpoints
and lag reports name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from stream.defaults import HEARTBEAT_INTERVAL_MS, MAX_POLL_INTERVAL_MS, SESSION_TIMEOUT_MS
from stream.errors import SourceError

# Room for a batch of small events around one event of MAX_MESSAGE_BYTES; larger records are
# refused by the producer and, on Apache Kafka, by the topic, so the decoder sees none.
TOPIC_MAX_MESSAGE_BYTES = 1_048_576


@dataclass(frozen=True)
class KafkaSettings:
    """Connection and consumer settings; `client_options` go to every client that knows them
    (``security_protocol``, ``sasl_*``, ``ssl_*``, ...)."""

    bootstrap: str
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    max_poll_interval_ms: int = MAX_POLL_INTERVAL_MS
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
