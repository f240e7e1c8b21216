"""Errors at the edges: a service that is not there is one line and exit code 1, never a
traceback; a daemon started before its broker waits for it (with backoff, one log line per
attempt), and a stop ends the wait at once."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from store import Unreachable as RedisUnreachable
from stream import Unreachable as KafkaUnreachable
from stream.broker import LocalBroker, free_port
from trainer.daemon.waiting import wait_for
from trainer.errors import Stopped


def recstream(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=timeout
    )


def one_line_error(proc: subprocess.CompletedProcess[str], command: str, address: str) -> str:
    """The single stderr line of a failed command (run with --log-level ERROR)."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"recstream {command}: cannot reach ") and address in lines[0]
    return lines[0]


# ---- wait_for, without services ------------------------------------------------------------


def test_wait_for_retries_until_the_service_answers(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def attempt(left_s: float) -> str:
        calls.append(left_s)
        if len(calls) < 3:
            raise KafkaUnreachable("h:1", "connection refused")
        return "up"

    with caplog.at_level(logging.WARNING):
        assert wait_for(attempt, 10.0, first_delay_s=0.01) == "up"
    assert len(calls) == 3 and all(0 < left <= 10 for left in calls)
    waiting = [r.getMessage() for r in caplog.records]
    assert len(waiting) == 2
    assert waiting[1].startswith("waiting for the Kafka broker at h:1 (attempt 2, next in ")
    assert waiting[1].endswith("s): connection refused")


def test_wait_for_gives_up_naming_the_setting() -> None:
    def attempt(left_s: float) -> None:
        raise RedisUnreachable("redis://h:1/0", "Connection refused")

    started = time.monotonic()
    with pytest.raises(RedisUnreachable) as err:
        wait_for(attempt, 0.3, first_delay_s=0.05, setting="--redis")
    assert time.monotonic() - started < 2
    assert "cannot reach Redis at redis://h:1/0 (Connection refused; gave up after" in str(
        err.value
    )
    assert str(err.value).endswith("check that it runs and that --redis names it")


def test_a_stop_ends_the_wait_at_once() -> None:
    def attempt(left_s: float) -> None:
        raise KafkaUnreachable("h:1", "connection refused")

    stop_at = time.monotonic() + 0.3
    started = time.monotonic()
    with pytest.raises(Stopped, match="h:1"):
        wait_for(attempt, 60.0, should_stop=lambda: time.monotonic() > stop_at)
    assert time.monotonic() - started < 2


# ---- the command line against closed ports -------------------------------------------------


@pytest.mark.slow
def test_train_against_a_closed_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    proc = recstream(
        "train",
        "--source",
        f"kafka://127.0.0.1:{port}/t",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--connect-timeout",
        "3",
        "--log-level",
        "ERROR",
    )
    # the wait is 3 s; the rest is the interpreter and torch starting on a shared machine
    assert time.monotonic() - started < 30
    line = one_line_error(proc, "train", f"127.0.0.1:{port}")
    assert "connection refused" in line and "--source" in line


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained from a small log, for `publish`."""
    folder = tmp_path_factory.mktemp("edges")
    log = folder / "events.jsonl"
    done = recstream("generate", "-o", str(log), "--events", "2000", "--users", "40")
    assert done.returncode == 0, done.stderr
    ckpt = folder / "ckpt"
    args = ["train", "--source", f"file://{log}", "--checkpoint-dir", str(ckpt)]
    done = recstream(*args, "--stop-when-idle", "1", "--no-progress", "--dim", "8")
    assert done.returncode == 0, done.stderr
    return ckpt


@pytest.mark.slow
def test_recommend_and_publish_against_a_closed_redis_port(checkpoint_dir: Path) -> None:
    redis = f"redis://127.0.0.1:{free_port()}/0"
    quiet = ("--log-level", "ERROR")
    one_line_error(
        recstream("recommend", "--redis", redis, "--user", "1", *quiet), "recommend", redis
    )
    one_line_error(
        recstream("publish", "--checkpoint-dir", str(checkpoint_dir), "--redis", redis, *quiet),
        "publish",
        redis,
    )
    watch = ["publish", "--watch", "--checkpoint-dir", str(checkpoint_dir), "--redis", redis]
    line = one_line_error(recstream(*watch, "--connect-timeout", "2", *quiet), "publish", redis)
    assert "gave up after" in line


# ---- a trainer started before its broker --------------------------------------------------


class Lines:
    """A process's stderr lines, read on a thread; `wait_for` a line containing some text."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.lines: list[str] = []
        self._stream = proc.stderr
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> str:
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((x for x in self.lines if text in x), None), timeout_s
            )
        assert found, f"no line with {text!r} in {timeout_s} s:\n" + "\n".join(self.lines)
        return found


def start_train(tmp_path: Path, uri: str, *extra: str) -> tuple[subprocess.Popen[str], Lines]:
    args = ["--source", uri, "--checkpoint-dir", str(tmp_path / "ckpt"), "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", *args, "--dim", "8", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, Lines(proc)


@pytest.mark.slow
def test_a_trainer_started_before_its_broker_waits_then_trains(tmp_path: Path) -> None:
    from stream.replay import replay
    from stream.synthetic import World, generate, write_jsonl

    log = tmp_path / "events.jsonl"
    write_jsonl(log, generate(World(users=50, items=60, clusters=2, seed=3), 600))
    port = free_port()
    uri = f"kafka://127.0.0.1:{port}/early"
    proc, lines = start_train(tmp_path, uri, "--stop-when-idle", "4", "--group", "early")
    try:
        lines.wait_for(f"waiting for the Kafka broker at 127.0.0.1:{port} (attempt 1", 120)
        time.sleep(2)  # the trainer keeps waiting, a few seconds, before the broker comes up
        with LocalBroker(port=port):
            replay(log, uri, progress=False)
            out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, "\n".join(lines.lines)
    assert json.loads(out.strip().splitlines()[-1])["events_applied"] == 600
    waited = [x for x in lines.lines if "waiting for the Kafka broker" in x]
    assert waited and all("connection refused" in x for x in waited)
    assert not [x for x in lines.lines if "Traceback" in x]


@pytest.mark.slow
def test_sigterm_during_the_wait_stops_the_trainer_at_once(tmp_path: Path) -> None:
    port = free_port()
    proc, lines = start_train(tmp_path, f"kafka://127.0.0.1:{port}/t", "--connect-timeout", "120")
    try:
        lines.wait_for("waiting for the Kafka broker", 120)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - stopped < 5
    finally:
        proc.kill()
    assert proc.returncode == 0, "\n".join(lines.lines)
    lines.wait_for("stopped while waiting for the Kafka broker", 5)
