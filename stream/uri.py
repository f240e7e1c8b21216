"""Source addresses: ``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` and ``file://PATH``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stream.errors import SourceError

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})")
_EXAMPLES = "kafka://localhost:9092/events or file://events.jsonl"


@dataclass(frozen=True)
class SourceURI:
    """A parsed source address; `path` is as written (relative paths stay relative)."""

    scheme: Literal["kafka", "file"]
    bootstrap: str = ""  # "host:port[,host:port]" for kafka
    topic: str = ""
    path: str = ""


def parse_uri(uri: str) -> SourceURI:
    """Parse a source address, or raise `SourceError` saying what a valid one looks like.

    >>> parse_uri("kafka://b1:9092,b2:9092/clicks")
    SourceURI(scheme='kafka', bootstrap='b1:9092,b2:9092', topic='clicks', path='')
    >>> parse_uri("file://logs/events.jsonl.gz").path
    'logs/events.jsonl.gz'
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise SourceError(f"source {uri!r} has no scheme; expected e.g. {_EXAMPLES}")
    if scheme == "file":
        if not rest:
            raise SourceError(f"source {uri!r} names no file; expected e.g. file://events.jsonl")
        return SourceURI("file", path=rest)
    if scheme == "kafka":
        return _parse_kafka(uri, rest)
    raise SourceError(f"source {uri!r} has unknown scheme {scheme!r}; expected e.g. {_EXAMPLES}")


def _parse_kafka(uri: str, rest: str) -> SourceURI:
    hosts, slash, topic = rest.partition("/")
    if not slash or not topic:
        raise SourceError(
            f"source {uri!r} names no topic; expected kafka://HOST:PORT[,HOST:PORT]/TOPIC"
        )
    if not _TOPIC.fullmatch(topic):
        raise SourceError(
            f"source {uri!r}: topic {topic!r} is not a Kafka topic name"
            " (1-249 characters of letters, digits, '.', '_' and '-')"
        )
    servers = hosts.split(",")
    for server in servers:
        match = _HOST_PORT.fullmatch(server)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise SourceError(
                f"source {uri!r}: broker {server!r} is not HOST:PORT;"
                " expected kafka://HOST:PORT[,HOST:PORT]/TOPIC"
            )
    return SourceURI("kafka", bootstrap=",".join(servers), topic=topic)
