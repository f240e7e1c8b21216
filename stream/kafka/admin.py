"""Topics: describing them, and creating them with a known partition count.

Brokers auto-create a missing topic on produce and on subscribe, with their default partition
count (4 on Tansu), so every topic recstream uses is created here first, explicitly.
A topic's id is new each time it is created: a checkpoint keeps it to notice a re-created topic.
"""

from __future__ import annotations

from typing import Any

import kafka.errors as kerr
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from stream.defaults import TOPIC_PARTITIONS
from stream.errors import SourceError
from stream.kafka.settings import TOPIC_MAX_MESSAGE_BYTES, KafkaSettings, connect


def describe_topic(settings: KafkaSettings, topic: str) -> dict[str, Any] | None:
    """kafka-python's description of `topic` (``topic_id``, ``partitions``), or None if missing."""
    admin = connect(settings, KafkaAdminClient)
    try:
        (info,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if info["error_code"] == kerr.UnknownTopicOrPartitionError.errno:
        return None
    if info["error_code"]:
        raise SourceError(f"cannot describe topic {topic!r}: {kerr.for_code(info['error_code'])}")
    return info


def topic_id(settings: KafkaSettings, topic: str) -> str | None:
    """The topic's id (new each time the topic is created), or None if it does not exist."""
    info = describe_topic(settings, topic)
    return None if info is None else str(info["topic_id"])


def ensure_topic(settings: KafkaSettings, topic: str, partitions: int = TOPIC_PARTITIONS) -> str:
    """Create `topic` with `partitions` partitions unless it exists; return its topic_id."""
    admin = connect(settings, KafkaAdminClient)
    config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}
    try:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
    except kerr.TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    found = topic_id(settings, topic)
    if found is None:
        raise SourceError(f"topic {topic!r} was created on {settings.bootstrap} but is not visible")
    return found
