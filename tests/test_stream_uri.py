"""Source addresses: what parses, and what each bad one is told."""

from __future__ import annotations

import pytest

from stream.errors import SourceError
from stream.uri import SourceURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("kafka://localhost:9092/events", SourceURI("kafka", "localhost:9092", "events")),
        (
            "kafka://b1:9092,10.0.0.2:9093/a.b_c-d",
            SourceURI("kafka", "b1:9092,10.0.0.2:9093", "a.b_c-d"),
        ),
        ("kafka://[::1]:9092/t", SourceURI("kafka", "[::1]:9092", "t")),
        ("file://events.jsonl", SourceURI("file", path="events.jsonl")),
        ("file:///var/log/ev.jsonl.gz", SourceURI("file", path="/var/log/ev.jsonl.gz")),
    ],
)
def test_valid_uris(uri: str, parsed: SourceURI) -> None:
    assert parse_uri(uri) == parsed


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("events.jsonl", "has no scheme"),
        ("http://host/x", "unknown scheme 'http'"),
        ("file://", "names no file"),
        ("kafka://localhost:9092", "names no topic"),
        ("kafka://localhost:9092/", "names no topic"),
        ("kafka://localhost/events", "broker 'localhost' is not HOST:PORT"),
        ("kafka://localhost:99999/events", "broker 'localhost:99999' is not HOST:PORT"),
        ("kafka://a:1,/events", "broker '' is not HOST:PORT"),
        ("kafka://a:1/bad topic", "topic 'bad topic' is not a Kafka topic name"),
        ("kafka://a:1/x/y", "topic 'x/y' is not a Kafka topic name"),
    ],
)
def test_invalid_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=r"expected|Kafka topic name") as caught:
        parse_uri(uri)
    assert message in str(caught.value)
