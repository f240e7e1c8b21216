"""Kafka fixtures: one broker per session, one topic per test.

The broker is, in order: KAFKA_BOOTSTRAP_SERVERS from the environment; a testcontainers Kafka
where a Docker engine answers; else the local Tansu broker (`stream.broker.LocalBroker`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from stream.broker import LocalBroker
from stream.kafka import KafkaSettings

# testcontainers' KafkaContainer runs Confluent's build of Apache Kafka: its start script
# needs that image's layout, so the bare apache/kafka image would not boot in it.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


def _container() -> tuple[str, object]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    container = KafkaContainer(KAFKA_IMAGE).with_kraft()
    container.start()
    return container.get_bootstrap_server(), container


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``"host:port"`` of a Kafka-compatible broker for the whole session."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    try:
        bootstrap, container = _container()
    except Exception:  # no Docker engine: DockerException within milliseconds
        log = tmp_path_factory.mktemp("kafka") / "tansu.log"
        with LocalBroker(log_path=str(log)) as broker:
            yield broker.bootstrap
        return
    try:
        yield bootstrap
    finally:
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for the session broker, with the short group timeouts tests need."""
    return KafkaSettings(kafka_bootstrap)


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or earlier run against the same broker) uses."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
    return f"t-{name}-{uuid.uuid4().hex[:8]}"
