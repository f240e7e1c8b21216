"""Fault scenarios 7, 8 and 9: failover to a standby, SIGTERM under load, an unwritable
checkpoint directory. Real trainer processes against a real broker, with events streaming in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.faultkit import (
    Proc,
    Producer,
    applied_counts,
    committed,
    figure,
    log_counts,
    train_args,
    verdict,
    wait_until,
)
from trainer.daemon.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

RATE = 2000  # events/s streamed while the trainers run


def past_checkpoint(proc: Proc, checkpoint_dir: Path) -> bool:
    """The trainer holds events that its newest checkpoint does not (one scrape, then the
    checkpoint that scrape names, so a checkpoint written in between reads as not yet)."""
    metrics = proc.metrics()
    ckpt = CheckpointStore(checkpoint_dir).latest()
    return (
        ckpt is not None
        and ckpt.id == metrics.get("recstream_checkpoint_id")
        and metrics.get("recstream_events_applied", 0) > ckpt.meta["events_applied"]
    )


def test_failover_to_a_standby_loses_and_repeats_nothing(kafka_bootstrap, topic, tmp_path):
    producer = Producer(kafka_bootstrap, topic)
    producer.stream(RATE)
    ckpt_dir, group = tmp_path / "ckpt", f"g-{topic}"
    args = train_args(kafka_bootstrap, topic, group, ckpt_dir, "--checkpoint-every", "1")
    active = Proc(args, tmp_path / "active.log")
    standby = None
    try:
        wait_until(lambda: active.metric("recstream_checkpoint_id") >= 2, 60, "2 checkpoints")
        standby = Proc(args, tmp_path / "standby.log")
        wait_until(lambda: standby.metric("recstream_standby") == 1, 30, "the standby to wait")
        assert standby.health()[0] == 200  # a standby is healthy
        # the active one trains on past its last checkpoint: the standby must replay that part
        wait_until(lambda: past_checkpoint(active, ckpt_dir), 30, "events past the checkpoint")
        active.signal(signal.SIGKILL)
        killed = time.monotonic()
        assert active.wait(10) == -9
        wait_until(lambda: standby.metric("recstream_events_trained_total") > 0, 60, "the takeover")
        takeover = time.monotonic() - killed
        produced = producer.stop()
        wait_until(lambda: standby.caught_up(applied=produced), 60, "the new active to catch up")
        standby.signal(signal.SIGTERM)
        assert standby.wait(30) == 0
    finally:
        producer.stop()
        for p in (active, standby):
            if p is not None:
                p.kill()
    log = standby.log()
    assert "standby:" in log and "taking over after" in log and "resumed from checkpoint" in log
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    figure("takeover (SIGKILL of the active to the first event trained by the standby)", takeover)
    assert (lost, doubled) == (0, 0)
    assert sum(applied.values()) == produced


def test_sigterm_under_load_exits_0_in_grace_and_resumes_exactly(
    kafka_bootstrap, topic, tmp_path, redis_url, namespace
):
    grace = 10.0
    producer = Producer(kafka_bootstrap, topic)
    producer.stream(RATE)
    ckpt_dir, group = tmp_path / "ckpt", f"g-{topic}"
    args = train_args(
        kafka_bootstrap,
        topic,
        group,
        ckpt_dir,
        "--checkpoint-every",
        "2",
        "--shutdown-grace",
        str(grace),
        "--namespace",
        namespace,
    )
    env = {"RECSTREAM_REDIS": redis_url}  # the trainer starts a writer process for it
    first = Proc(args, tmp_path / "first.log", env=env)
    try:
        wait_until(lambda: first.metric("recstream_events_trained_total") > 3000, 60, "load")
        first.signal(signal.SIGTERM)
        signalled = time.monotonic()
        rc = first.wait(grace + 20)
        shutdown = time.monotonic() - signalled
        assert rc == 0, first.log()[-3000:]
        ckpt = CheckpointStore(ckpt_dir).latest()
        assert ckpt is not None
        # the final checkpoint's offsets were committed, and its vectors published
        assert committed(kafka_bootstrap, group, topic) == sum(ckpt.meta["offsets"].values())
        client = redis.Redis.from_url(redis_url)
        assert int(client.get(f"{namespace}:current")) == ckpt.id
        client.close()
        assert "stopped" in first.log() and first.summary()["shutdown_s"] <= shutdown

        second = Proc([*args, "--stop-when-idle", "2"], tmp_path / "second.log", env=env)
        # events keep arriving while the second run starts: it applies some produced after
        # its start (each event is applied once, so more than were produced then); if it
        # exits instead, the assert below shows its log
        started_at = producer.next
        wait_until(
            lambda: not second.alive() or second.metric("recstream_events_applied") > started_at,
            60,
            "the second run to apply events produced after its start",
        )
        producer.stop()
        assert second.wait(120) == 0, second.log()[-3000:]
    finally:
        producer.stop()
        first.kill()
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    figure("shutdown under load (SIGTERM to exit 0, writer's final publish included)", shutdown)
    assert shutdown < grace
    assert (lost, doubled) == (0, 0)


def _make_unwritable(path: Path) -> tuple[list[str], list[str]]:
    """Commands that take away and give back write access, even from root (chattr +i)."""
    if os.geteuid() == 0:
        on, off = ["chattr", "+i", str(path)], ["chattr", "-i", str(path)]
    else:
        on, off = ["chmod", "0555", str(path)], ["chmod", "0755", str(path)]
    subprocess.run(on, check=True)
    probe = path / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return on, off
    probe.unlink()
    subprocess.run(off, check=True)
    raise AssertionError(f"{' '.join(on)} did not make {path} unwritable on this filesystem")


def test_unwritable_checkpoint_dir_alarms_keeps_the_old_one_and_recovers(
    kafka_bootstrap, topic, tmp_path
):
    producer = Producer(kafka_bootstrap, topic)
    producer.stream(RATE / 2)
    ckpt_dir, group = tmp_path / "ckpt", f"g-{topic}"
    args = train_args(
        kafka_bootstrap, topic, group, ckpt_dir, "--checkpoint-every", "0.5", "--stall-after", "3"
    )
    proc = Proc(args, tmp_path / "trainer.log")
    off: list[str] = []
    try:
        wait_until(lambda: proc.metric("recstream_checkpoint_id") >= 2, 60, "2 checkpoints")
        _, off = _make_unwritable(ckpt_dir)
        broke = time.monotonic()
        kept = CheckpointStore(ckpt_dir).latest()
        assert kept is not None
        trained = proc.metric("recstream_events_trained_total")
        wait_until(
            lambda: proc.metric("recstream_checkpoint_failures_total") >= 3, 30, "3 failures"
        )
        # training goes on, the health check fails once it has failed for --stall-after
        wait_until(lambda: proc.health()[0] == 503, 30, "the health check to fail")
        unhealthy = time.monotonic() - broke
        assert proc.alive()
        assert proc.metric("recstream_events_trained_total") > trained
        newest = CheckpointStore(ckpt_dir).latest()
        assert newest is not None and newest.id == kept.id  # the old checkpoint is kept
        subprocess.run(off, check=True)
        off = []
        repaired = time.monotonic()
        wait_until(lambda: proc.metric("recstream_checkpoint_id") > kept.id, 30, "a new checkpoint")
        recovered = time.monotonic() - repaired
        wait_until(lambda: proc.health()[0] == 200, 10, "the health check to pass again")
        producer.stop()
        wait_until(lambda: proc.caught_up(applied=producer.next), 60, "the trainer to catch up")
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if off:
            subprocess.run(off, check=True)
        producer.stop()
        proc.kill()
    assert "ALARM checkpoint failed" in proc.log()
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    figure("unwritable directory to failing health check", unhealthy)
    figure("write access back to the next checkpoint", recovered)
    assert (lost, doubled) == (0, 0)
