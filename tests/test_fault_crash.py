"""Fault scenarios 1 and 2: SIGKILL at named points, and a corrupt newest checkpoint.

A trainer in test mode kills itself (SIGKILL: no handler, no flush) at a named point; a second
run resumes from the newest good checkpoint. The oracle (per-event_id apply counts kept in the
checkpoint) must match the topic exactly: lost = 0, double-applied = 0.
"""

from __future__ import annotations

import signal
import time

import pytest

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
from trainer.daemon.checkpoint import STATE, CheckpointStore

pytestmark = pytest.mark.slow

EVENTS = 16_000
CKPT_EVERY = ["--checkpoint-every", "30", "--checkpoint-every-events", "2000"]


def _finish(args: list[str], tmp_path, name: str) -> tuple[Proc, float]:
    """Run a trainer without faults until it has read everything, then SIGTERM it; returns it
    and the seconds from its start to caught up (process start and group join included)."""
    proc = Proc(args, tmp_path / f"{name}.log")
    try:
        wait_until(proc.caught_up, 120, f"{name} to catch up")
        took = time.monotonic() - proc.started
        proc.signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        proc.kill()
    assert rc == 0, proc.log()[-3000:]
    return proc, took


@pytest.mark.parametrize(
    "point",
    ["after-step@40", "checkpoint-write@3", "after-checkpoint@3"],
)
def test_sigkill_at_a_named_point_loses_and_repeats_nothing(
    kafka_bootstrap, topic, tmp_path, point
):
    producer = Producer(kafka_bootstrap, topic)
    producer.produce(EVENTS)
    ckpt_dir, group = tmp_path / "ckpt", f"g-{topic}"
    args = train_args(kafka_bootstrap, topic, group, ckpt_dir, *CKPT_EVERY)

    crashed = Proc(args, tmp_path / "crashed.log", env={"RECSTREAM_FAULT": point})
    rc = crashed.wait(120)
    assert rc == -9, f"expected SIGKILL at {point}, got exit {rc}:\n{crashed.log()[-3000:]}"
    assert f"FAULT {point}: SIGKILL" in crashed.log()
    newest = CheckpointStore(ckpt_dir).latest()
    assert newest is not None
    if point.startswith("checkpoint-write"):
        # the third checkpoint died in its temp directory; the second is the newest
        assert newest.id == 2 and list(ckpt_dir.glob(".tmp-*"))
    if point.startswith("after-checkpoint"):
        # checkpoint 3 is on disk, its offsets never reached Kafka: resuming from the
        # group's committed offsets would apply the events in between twice
        assert newest.id == 3
        assert committed(kafka_bootstrap, group, topic) < sum(newest.meta["offsets"].values())
    if point.startswith("after-step"):
        # events were applied after the newest checkpoint and died with the process (step 40:
        # far enough past the first checkpoint, at 2000 events, that its write on the
        # checkpoint thread has finished whatever the batches' sizes)
        assert newest.meta["events_applied"] < 40 * 256

    resumed, took = _finish(args, tmp_path, "resumed")
    assert f"resumed from checkpoint {newest.id}" in resumed.log()
    assert not list(ckpt_dir.glob(".tmp-*"))
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    figure(f"{point}: restart to caught up ({EVENTS} events in the topic)", took)
    assert (lost, doubled) == (0, 0)
    assert resumed.summary()["events_applied"] == EVENTS
    assert committed(kafka_bootstrap, group, topic) == EVENTS  # committed after the final one


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(kafka_bootstrap, topic, tmp_path):
    producer = Producer(kafka_bootstrap, topic)
    producer.produce(EVENTS // 2)
    ckpt_dir, group = tmp_path / "ckpt", f"g-{topic}"
    args = train_args(kafka_bootstrap, topic, group, ckpt_dir, *CKPT_EVERY)
    _finish(args, tmp_path, "first")
    store = CheckpointStore(ckpt_dir)
    newest = store.latest()
    assert newest is not None and newest.id >= 2
    state = newest.path / STATE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # truncated
    previous = wait_until(store.latest, 5, "the previous checkpoint to load")
    assert previous.id < newest.id
    # Kafka has the newest checkpoint's offsets committed; the trainer must not trust them
    assert committed(kafka_bootstrap, group, topic) == EVENTS // 2
    producer.produce(EVENTS // 2)

    resumed, _ = _finish(args, tmp_path, "resumed")
    log = resumed.log()
    assert f"skipping checkpoint {newest.path.name}" in log
    assert f"resumed from checkpoint {previous.id}" in log
    _, applied = applied_counts(ckpt_dir)
    lost, doubled = verdict(log_counts(kafka_bootstrap, topic), applied)
    replayed = EVENTS // 2 - previous.meta["events_applied"]
    figure("events replayed after the corrupt checkpoint", replayed, "events")
    assert (lost, doubled) == (0, 0)
    assert resumed.summary()["events_applied"] == EVENTS
