"""The metrics endpoints of `train` and `publish --watch`: what they export, and /healthz."""

from __future__ import annotations

import math
import signal
import urllib.error
import urllib.request

import pytest

from stream.synthetic import World, generate, write_jsonl
from tests.faultkit import SMALL_MODEL, Proc, wait_until

pytestmark = pytest.mark.slow

EVENTS = 3000
BAD = [b"not json", b'{"user": 1}']


@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    write_jsonl(path, generate(World(users=100, items=200, clusters=4, seed=3), EVENTS))
    with open(path, "ab") as f:
        f.write(b"\n".join(BAD) + b"\n")
    return path


def test_trainer_and_writer_metrics_and_health(tmp_path, events_file, redis_url, namespace):
    ckpt_dir = tmp_path / "ckpt"
    trainer = Proc(
        [
            "train",
            "--source",
            f"file://{events_file}",
            "--checkpoint-dir",
            str(ckpt_dir),
            "--checkpoint-every",
            "0.5",
            "--namespace",
            namespace,
            "--no-progress",
            *SMALL_MODEL,
        ],
        tmp_path / "trainer.log",
    )
    writer = None
    try:
        wait_until(lambda: trainer.metric("recstream_checkpoint_id") >= 1, 60, "a checkpoint")
        wait_until(
            lambda: trainer.metric("recstream_events_trained_total") == EVENTS, 30, "training"
        )
        m = trainer.metrics()
        assert m["recstream_events_consumed_total"] == EVENTS + len(BAD)
        assert m["recstream_events_rejected_total"] == len(BAD)
        assert 0 <= m["recstream_checkpoint_age_seconds"] < 30
        assert m["recstream_loss"] > 0 and m["recstream_lag_events"] == 0
        assert math.isnan(m["recstream_published_version"])  # no writer yet
        recall = [s for s in trainer.samples() if s.name == "recstream_progressive_recall"]
        assert {s.labels["k"] for s in recall} >= {"10"}  # the learner exposes it
        assert all(0 <= s.value <= 1 for s in recall)
        code, body = trainer.health()
        assert code == 200 and body["status"] == "ok" and not body["stalled"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{trainer.port}/nothing", timeout=2)
        assert e.value.code == 404

        writer = Proc(
            ["publish", "--watch", "--checkpoint-dir", str(ckpt_dir), "--namespace", namespace],
            tmp_path / "writer.log",
            env={"RECSTREAM_REDIS": redis_url},
        )
        newest = trainer.metric("recstream_checkpoint_id")
        wait_until(lambda: writer.metric("recstream_published_version") >= newest, 30, "a publish")
        w = writer.metrics()
        assert w["recstream_publishes_total"] >= 1 and w["recstream_publish_failures_total"] == 0
        assert 0 <= w["recstream_publish_stale_seconds"] < 60
        assert writer.health()[0] == 200
        # the trainer sees what the writer published
        wait_until(lambda: trainer.metric("recstream_published_version") >= newest, 10, "it")
        assert trainer.metric("recstream_publish_age_seconds") < 60
        trainer.signal(signal.SIGTERM)
        assert trainer.wait(30) == 0
        assert trainer.summary()["events_applied"] == EVENTS
    finally:
        trainer.kill()
        if writer is not None:
            writer.kill()
