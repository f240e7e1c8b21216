"""Several trainers, one model: real processes under torchrun, a real broker, the apply-count
oracle. In every scenario: lost = 0 and double-applied = 0.

`recstream train --workers N` runs N ranks through `torchrun --standalone --max-restarts=3`;
each reads partitions p mod N; a group checkpoint is one directory with a part per rank.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

from stream.kafka import KafkaSink
from tests.faultkit import (
    Proc,
    Producer,
    applied_counts,
    event,
    health_at,
    log_counts,
    train_args,
    verdict,
    wait_until,
)
from tests.test_trainer_group import ThreadSync
from trainer.core.learner import Learner
from trainer.core.settings import ModelSettings
from trainer.daemon.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

EVENTS = 8_000
EVERY = ["--checkpoint-every", "30", "--checkpoint-every-events", "1500"]


def _run(args: list[str], tmp_path, name: str, env: dict[str, str] | None = None) -> Proc:
    """A group (or a single trainer) run to the end of the topic: exit 0 within 300 s."""
    proc = Proc([*args, "--stop-when-idle", "4"], tmp_path / f"{name}.log", env, metrics=False)
    rc = proc.wait(300)
    assert rc == 0, proc.log()[-4000:]
    return proc


def _exact(bootstrap: str, topic: str, ckpt_dir) -> None:
    _, applied = applied_counts(ckpt_dir)
    assert verdict(log_counts(bootstrap, topic), applied) == (0, 0)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed-by-user", "not-keyed"])
def test_two_ranks_train_one_model_exactly_with_identical_replicas(
    kafka_bootstrap, topic, tmp_path, keyed
):
    producer = Producer(kafka_bootstrap, topic)
    if keyed:
        producer.produce(EVENTS)
    else:  # a producer that spreads each user's events over every partition
        sink, rnd = KafkaSink(producer.settings, topic), random.Random(3)
        for n in range(EVENTS):
            sink.send(event(n), partition=rnd.randrange(4))
        sink.close()
    ckpt = tmp_path / "ckpt"
    args = train_args(kafka_bootstrap, topic, f"g-{topic}", ckpt, *EVERY, "--workers", "2")
    proc = _run(args, tmp_path, "group")
    assert proc.summary()["workers"] == 2 and proc.summary()["events_applied"] == EVENTS
    _exact(kafka_bootstrap, topic, ckpt)
    ckpts = [p for p in sorted(ckpt.glob("ckpt-*"))]
    assert ckpts, "no group checkpoint"
    for path in ckpts:  # after every checkpoint kept: the same replicated state on each rank
        meta = CheckpointStore.verify(path)
        digests = meta["group"]["digests"]
        assert len(digests) == 2 and len(set(digests)) == 1, digests
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "status", "--checkpoint-dir", str(ckpt)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = json.loads(out.stdout)  # `status` reads a group's checkpoint as a trainer's
    assert status["events_applied"] == EVENTS and status["workers"] == 2
    assert sum(status["offsets"].values()) == EVENTS


@pytest.mark.parametrize("point", ["after-step@5", "checkpoint-write@2"])
def test_a_rank_killed_restarts_the_group_and_nothing_is_lost_or_doubled(
    kafka_bootstrap, topic, tmp_path, point
):
    """SIGKILL rank 1 mid-stream, or between its part files and the manifest: torchrun restarts
    every rank from the last group checkpoint."""
    Producer(kafka_bootstrap, topic).produce(EVENTS)
    ckpt = tmp_path / "ckpt"
    args = train_args(kafka_bootstrap, topic, f"g-{topic}", ckpt, *EVERY, "--workers", "2")
    env = {"RECSTREAM_FAULT": point, "RECSTREAM_FAULT_RANK": "1"}
    proc = _run(args, tmp_path, "group", env)
    assert f"FAULT {point}" in proc.log(), "the fault did not fire"
    _exact(kafka_bootstrap, topic, ckpt)


def test_rescaling_2_to_1_to_2_re_deals_users_and_partitions(kafka_bootstrap, topic, tmp_path):
    producer = Producer(kafka_bootstrap, topic)
    ckpt = tmp_path / "ckpt"
    base = train_args(kafka_bootstrap, topic, f"g-{topic}", ckpt, *EVERY)
    for k, workers in enumerate((2, 1, 2)):
        producer.produce(3_000)
        more = ["--workers", "2"] if workers == 2 else []
        proc = _run([*base, *more], tmp_path, f"run{k}")
        assert proc.summary()["events_applied"] == producer.next
        _exact(kafka_bootstrap, topic, ckpt)
    meta = CheckpointStore(ckpt).latest()
    assert meta is not None and meta.meta["group"]["world"] == 2


def test_sigterm_writes_a_final_group_checkpoint_and_every_rank_exits_0(
    kafka_bootstrap, topic, tmp_path
):
    producer = Producer(kafka_bootstrap, topic)
    producer.stream(rate=1500)
    ckpt = tmp_path / "ckpt"
    args = train_args(kafka_bootstrap, topic, f"g-{topic}", ckpt, *EVERY, "--workers", "2")
    proc = Proc(args, tmp_path / "group.log", metrics=False)
    try:
        wait_until(lambda: list(ckpt.glob("ckpt-*")), 120, "a first group checkpoint")
        proc.signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        producer.stop()
        proc.kill()
    assert rc == 0, proc.log()[-4000:]
    assert proc.log().count("stopping (signal)") == 2  # both ranks stopped on the signal
    _run(args, tmp_path, "after")  # the rest: exactly once across the stop
    _exact(kafka_bootstrap, topic, ckpt)


def test_two_ranks_at_b_learn_as_well_as_one_at_2b() -> None:
    """Quality parity, in one process (ranks on threads): progressive recall@10 of a group of 2
    at batch B against one learner at 2B, on the same stream, within ±0.01."""
    import threading

    import torch

    from tests.clustered import Clustered

    torch.set_num_threads(1)
    s = ModelSettings(dim=16, history=5, eval_budget=10.0, seed=4)
    data = Clustered(users=2000, items=2000, seed=7)
    stream = [data.batch(512) for _ in range(60)]
    alone = Learner(s)
    for b in stream:
        alone.learn(b)
    board, barrier = [None, None], threading.Barrier(2)
    group = [Learner(s, sync=ThreadSync(r, board, barrier)) for r in range(2)]

    def run(rank: int) -> None:
        for b in stream:  # each rank reads half of every 2B batch: B events
            group[rank].learn(b.take(np.arange(len(b)) % 2 == rank))

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures = [g.evaluator.progress for g in group]
    n = sum(f.evaluated for f in figures)
    together = sum(f.running[10].get() * f.evaluated for f in figures) / n
    single = alone.evaluator.progress.running[10].get()
    assert abs(together - single) <= 0.01, (together, single)


def test_a_rank_stuck_in_a_step_fails_its_health_check_then_recovers(
    kafka_bootstrap, topic, tmp_path
):
    """Rank 1 pauses 8 s inside a step (--stall-after 2): its /healthz (on --metrics-port + 1)
    answers 503 with the stalled phase, then the group finishes exactly once."""
    Producer(kafka_bootstrap, topic).produce(EVENTS)
    ckpt = tmp_path / "ckpt"
    args = train_args(kafka_bootstrap, topic, f"g-{topic}", ckpt, *EVERY, "--workers", "2")
    env = {"RECSTREAM_FAULT": "slow-step@3:pause=8", "RECSTREAM_FAULT_RANK": "1"}
    proc = Proc([*args, "--stall-after", "2", "--stop-when-idle", "4"], tmp_path / "g.log", env)
    assert proc.port is not None
    rank1 = proc.port + 1
    try:
        _, body = wait_until(
            lambda: (lambda h: h if h[0] == 503 else None)(health_at(rank1)),
            60,
            "rank 1's /healthz to fail",
        )
        assert body["stalled"] and body["rank"] == 1 and body["phase"] == "learning", body
        wait_until(lambda: health_at(rank1)[0] == 200, 30, "rank 1's /healthz to recover")
        rc = proc.wait(300)
    finally:
        proc.kill()
    assert rc == 0, proc.log()[-4000:]
    assert "ALARM training stalled" in proc.log()
    _exact(kafka_bootstrap, topic, ckpt)
