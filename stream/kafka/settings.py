"""How to reach Kafka: `KafkaSettings` (shared by every client here), `connect` (a client, or
`Unreachable` naming the address and why) and partition keys.

A partition's position key, ``"<topic>:<partition>"`` (`key_of`), is how sources, checkpoints
and lag reports name it.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import kafka.errors as kerr
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from stream.defaults import HEARTBEAT_INTERVAL_MS, MAX_POLL_INTERVAL_MS, SESSION_TIMEOUT_MS
from stream.errors import SourceError, Unreachable

C = TypeVar("C")

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

    def plain(self) -> dict[str, Any]:
        """These settings as plain values (they pickle: for a source in another process)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return {**values, "client_options": dict(self.client_options)}

    @classmethod
    def from_plain(cls, values: dict[str, Any]) -> KafkaSettings:
        options = MappingProxyType(dict(values.get("client_options", {})))
        return cls(**{**values, "client_options": options})

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


def connect(settings: KafkaSettings, client: type[C], **fixed: Any) -> C:
    """A kafka-python `client` made with ``settings.config(client, **fixed)``.

    Raises `Unreachable` when no broker answers: at once when no bootstrap address accepts a
    TCP connection (kafka-python would retry until its bootstrap timeout, logging each try),
    else when the client's bootstrap times out (e.g. a listener that speaks no Kafka, or TLS or
    SASL settings the broker refuses).
    """
    why = _no_listener(settings.bootstrap)
    if why is None:
        config = settings.config(client, **fixed)
        try:
            return client(**config)
        except (kerr.NoBrokersAvailable, kerr.KafkaTimeoutError) as e:
            defaults = client.DEFAULT_CONFIG  # type: ignore[attr-defined]
            timeout_ms = config.get("bootstrap_timeout_ms", defaults["bootstrap_timeout_ms"])
            why = f"bootstrap failed after {timeout_ms / 1000:g} s ({type(e).__name__})"
    raise Unreachable(settings.bootstrap, why)


def _no_listener(bootstrap: str, timeout_s: float = 2.0) -> str | None:
    """None if some address of `bootstrap` (``host:port,...``) accepts a TCP connection, else why
    none does."""
    reasons = []
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
            return None
        except socket.gaierror:
            reasons.append(f"unknown host {host!r}")
        except ConnectionRefusedError:
            reasons.append("connection refused")
        except TimeoutError:
            reasons.append(f"no answer in {timeout_s:g} s")
        except (OSError, ValueError) as e:
            reasons.append(getattr(e, "strerror", None) or str(e))
    return "; ".join(dict.fromkeys(reasons))
