"""A real Redis for the whole session, and a fresh key namespace per test.

The server comes from, in order: `REDIS_URL` in the environment; testcontainers where a Docker
engine answers; else `redis-server` started on a free loopback port (store.RedisServer).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from store.server import RedisServer


def _container() -> tuple[object, str] | None:
    """(started container, url), or None where there is no Docker engine."""
    try:
        from docker.errors import DockerException
    except ImportError:
        return None
    try:
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:  # testcontainers < 4.10
            from testcontainers.redis import RedisContainer
        # Without an engine this raises DockerException within milliseconds.
        container = RedisContainer("redis:7-alpine").start()
    except (ImportError, DockerException):
        return None
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return container, f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server that lives as long as the test session."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if started := _container():
        container, url = started
        yield url
        container.stop()  # type: ignore[attr-defined]
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A namespace no other test uses; its keys are deleted afterwards."""
    ns = f"test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()
