"""The watchdog and the poll-interval alarm: a stuck step fails the health check, a batch over
max_poll_interval_ms is an alarm (the group drops the consumer) and still loses nothing."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faultkit import (
    Proc,
    Producer,
    applied_counts,
    figure,
    log_counts,
    train_args,
    verdict,
    wait_until,
)
from trainer.daemon.watchdog import Progress, Watchdog


def test_watchdog_sees_a_loop_that_stopped_turning():
    p = Progress()
    dog = Watchdog(p, stall_after_s=10)
    t = p.beat
    assert not dog.check(now=t + 9)
    assert dog.check(now=t + 11) and "has not turned" in dog.reason
    p.turn("polling")
    assert not dog.check(now=p.beat + 1)


def test_watchdog_sees_a_position_standing_still_while_the_log_grows():
    ends = {"t:0": 100}
    p = Progress()
    dog = Watchdog(p, stall_after_s=10, end_offsets=lambda: dict(ends))
    t0 = p.moved
    for dt in range(0, 25, 2):  # the loop turns, the position never moves, the log grows
        p.beat = t0 + dt
        ends["t:0"] += 50
        stalled = dog.check(now=t0 + dt)
    assert stalled and "has not moved" in dog.reason
    p.advanced()
    p.beat = p.moved
    assert not dog.check(now=p.moved + 1)


def test_watchdog_is_quiet_while_nothing_arrives():
    p = Progress()
    dog = Watchdog(p, stall_after_s=10, end_offsets=lambda: {"t:0": 100})
    t0 = p.moved
    for dt in range(0, 40, 2):  # idle: no new records, the position rightly stays
        p.beat = t0 + dt
        assert not dog.check(now=t0 + dt)


@pytest.mark.slow
def test_a_stuck_step_fails_health_and_a_long_batch_loses_nothing(kafka_bootstrap, topic, tmp_path):
    """A step that hangs 8 s: the watchdog alarms and /healthz fails within --stall-after; the
    gap between polls exceeds max_poll_interval_ms, the group drops the consumer, it rejoins."""
    producer = Producer(kafka_bootstrap, topic)
    producer.stream(1000)
    ckpt_dir = tmp_path / "ckpt"
    args = train_args(
        kafka_bootstrap,
        topic,
        f"g-{topic}",
        ckpt_dir,
        "--checkpoint-every",
        "1",
        "--stall-after",
        "2",
        "--max-poll-interval-ms",
        "5000",
    )
    proc = Proc(args, tmp_path / "trainer.log", env={"RECSTREAM_FAULT": "slow-step@30:pause=8"})
    try:
        wait_until(lambda: "FAULT slow-step@30" in proc.log(), 60, "the stuck step")
        stuck = time.monotonic()
        _, body = wait_until(
            lambda: (h := proc.health())[0] == 503 and h, 10, "the health check to fail"
        )
        alarm = time.monotonic() - stuck
        # whichever sign comes first: the loop stopped, or the position stands while events wait
        assert body["stalled"] and "has not" in body["reason"]
        assert proc.metric("recstream_stalled") == 1
        wait_until(lambda: proc.health()[0] == 200, 30, "the health check to pass again")
        wait_until(
            lambda: proc.metric("recstream_poll_interval_exceeded_total") >= 1, 10, "the alarm"
        )
        producer.stop()
        wait_until(lambda: proc.caught_up(applied=producer.next), 60, "the trainer to catch up")
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        producer.stop()
        proc.kill()
    log = proc.log()
    assert "ALARM training stalled" in log and "training moves again" in log
    assert "over max_poll_interval_ms=5000" in log
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    figure("stuck step to failing /healthz (--stall-after 2)", alarm)
    assert (lost, doubled) == (0, 0)
