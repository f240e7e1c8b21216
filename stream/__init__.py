"""Events in: the event format, sources (Kafka, event logs in JSONL, CSV, TSV or Parquet), a
synthetic stream with a truth.

The Kafka names load kafka-python on first use, so importing `stream` for `Interaction` does
not drag a Kafka client into the trainer's core.
"""

from typing import TYPE_CHECKING, Any

from stream.broker import LocalBroker, tansu_path
from stream.errors import (
    InvalidEvent,
    MappingError,
    SinkError,
    SourceError,
    StreamError,
    Unreachable,
)
from stream.event import MAX_ID_BYTES, MAX_MESSAGE_BYTES, Decoder, Interaction, encode
from stream.files import FileSource, iter_lines
from stream.formats import FieldMap, LogFormat
from stream.source import Batch, EventSource
from stream.synthetic import World, generate, write_jsonl
from stream.uri import SourceURI, parse_uri

if TYPE_CHECKING:
    from stream.kafka import (
        KafkaSettings,
        KafkaSink,
        KafkaSource,
        ensure_topic,
        offsets_for_time,
        topic_id,
    )

_KAFKA_NAMES = {
    "KafkaSettings",
    "KafkaSink",
    "KafkaSource",
    "ensure_topic",
    "offsets_for_time",
    "topic_id",
}


def __getattr__(name: str) -> Any:
    if name in _KAFKA_NAMES:
        from stream import kafka

        return getattr(kafka, name)
    raise AttributeError(f"module 'stream' has no attribute {name!r}")


__all__ = [
    "MAX_ID_BYTES",
    "MAX_MESSAGE_BYTES",
    "Batch",
    "Decoder",
    "EventSource",
    "FieldMap",
    "FileSource",
    "Interaction",
    "InvalidEvent",
    "KafkaSettings",
    "KafkaSink",
    "KafkaSource",
    "LocalBroker",
    "LogFormat",
    "MappingError",
    "SinkError",
    "SourceError",
    "SourceURI",
    "StreamError",
    "Unreachable",
    "World",
    "encode",
    "ensure_topic",
    "generate",
    "iter_lines",
    "offsets_for_time",
    "parse_uri",
    "tansu_path",
    "topic_id",
    "write_jsonl",
]
