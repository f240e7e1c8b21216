"""The local redis-server launcher, and connecting with a password (which must never leak)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import redis

from store import PublishError, Reader, RedisServer, Snapshot, StoreError, Writer, ping

SECRET = "s3cr:t/p@ss"  # URL-special characters: must be quoted in the URL


def tiny(version: int) -> Snapshot:
    vectors = np.eye(3, dtype=np.float32) * version
    return Snapshot(version, 0, ["a", "b", "c"], vectors, ["u"], vectors[:1])


def test_password_server_publish_read_and_no_leaks(caplog):
    caplog.set_level(logging.DEBUG, logger="store")
    with RedisServer(password=SECRET) as server:
        assert SECRET not in repr(server)
        writer = Writer.from_url(server.url, "ns")
        assert writer.publish(tiny(1)) == 1
        reader = Reader.from_url(server.url, "ns")
        assert reader.recommend("u", k=1) == [{"item": "a", "score": 1.0}]
        wrong = Reader.from_url(server.url.replace("s3cr", "nope"), "ns")
        with pytest.raises(StoreError) as err:
            wrong.version()
        shown = [repr(writer), repr(reader), str(err.value), caplog.text]
        assert not [s for s in shown if SECRET in s or "s3cr" in s]
        assert not ping(server.url.replace("s3cr", "nope"))
        for r in (reader, wrong):
            r.close()
        writer.close()


def test_kill_and_restart_on_the_same_port():
    with RedisServer() as server:
        reader = Reader.from_url(server.url, "ns")
        writer = Writer.from_url(server.url, "ns", socket_timeout=1)
        writer.publish(tiny(1))
        port = server.port
        server.kill()
        assert not ping(server.url)
        with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
            reader.version()  # a StoreError naming the server, not a raw redis error
        with pytest.raises(PublishError, match=f"publishing version 2 .*127.0.0.1:{port}"):
            writer.publish(tiny(2))
        server.restart()
        assert server.port == port and ping(server.url)
        assert reader.version() is None  # no persistence: it came back empty
        assert writer.publish(tiny(2)) == 2  # the same clients reconnect
        assert reader.recommend("u", k=1) == [{"item": "a", "score": 4.0}]
        reader.close()
        writer.close()
    assert not ping(server.url)


def test_missing_binary_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StoreError, match="redis-server is not on PATH"):
        RedisServer()


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with RedisServer() as first, pytest.raises(StoreError, match=f"port {first.port}"):
        RedisServer(port=first.port, password="other", timeout=2)


def test_clients_that_decode_responses_are_refused(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        Reader(client)
    with pytest.raises(ValueError, match="decode_responses=False"):
        Writer(client, "ns")
    with pytest.raises(ValueError, match="namespace 'a b'"):
        Reader.from_url(redis_url, "a b")
    client.close()
