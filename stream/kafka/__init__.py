"""Kafka in and out, through kafka-python (>= 3.0; this package is the only one that imports it).

- `settings`: `KafkaSettings` (how to reach the cluster), `key_of` (a partition's position key).
- `admin`: `ensure_topic`, `topic_id` (topics are created explicitly, with a known count).
- `sink`: `KafkaSink` (a producer that never loses a failure), `KafkaDeadLetter`.
- `source`: `KafkaSource`, the `EventSource` over a consumer group that commits by hand.
- `rebalance`: the bridge that runs the source's rebalance work without blocking heartbeats.
- `probes`: `EndOffsets`, `offsets_for_time` (a topic seen without joining its group).

Works on Apache Kafka and on the local Tansu broker, whose quirks decide some choices here:
lag comes from ``highwater()`` after a fetch (``end_offsets()`` can be wrong), a time is found by
binary search over fetched timestamps (``offsets_for_times()`` can be wrong), stored offsets are
checked against the log start and the high watermark by hand (no OFFSET_OUT_OF_RANGE), and
topics are created explicitly with a known partition count.
"""

from stream.kafka.admin import ensure_topic, topic_id
from stream.kafka.probes import EndOffsets, offsets_for_time
from stream.kafka.settings import TOPIC_MAX_MESSAGE_BYTES, KafkaSettings, key_of
from stream.kafka.sink import KafkaDeadLetter, KafkaSink
from stream.kafka.source import KafkaSource


def build_source(settings: dict, topic: str, group: str, **kwargs) -> KafkaSource:  # type: ignore[type-arg]
    """A `KafkaSource` from `KafkaSettings.plain()` values: how a source process
    (`stream.process.ProcessSource`) makes one."""
    return KafkaSource(KafkaSettings.from_plain(settings), topic, group, **kwargs)


__all__ = [
    "TOPIC_MAX_MESSAGE_BYTES",
    "EndOffsets",
    "KafkaDeadLetter",
    "KafkaSettings",
    "KafkaSink",
    "KafkaSource",
    "build_source",
    "ensure_topic",
    "key_of",
    "offsets_for_time",
    "topic_id",
]
