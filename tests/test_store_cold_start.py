"""Serving the query side: users carried over between versions, only active ones rewritten;
the published query tower answers for users without a vector."""

from __future__ import annotations

import numpy as np
import pytest

from store import Reader, Snapshot, Writer
from trainer.core.features import parse_fields
from trainer.core.learner import EventColumns, Learner
from trainer.core.settings import ModelSettings
from trainer.daemon.serving import to_snapshot


def _snap(version: int, users: dict[str, float], stamps: dict[str, int], stamp: int) -> Snapshot:
    ids = list(users)
    return Snapshot(
        version=version,
        created_ms=0,
        item_ids=["i0", "i1"],
        item_vectors=np.eye(2, dtype=np.float32) * version,
        user_ids=ids,
        user_vectors=np.array([[users[u], 1.0] for u in ids], np.float32),
        user_stamps=np.array([stamps[u] for u in ids]),
        stamp=stamp,
    )


def test_only_users_active_since_the_last_publish_are_rewritten(redis_url, namespace):
    writer = Writer.from_url(redis_url, namespace=namespace, grace_s=0)
    reader = Reader.from_url(redis_url, namespace=namespace)
    writer.publish(_snap(1, {"a": 1.0, "b": 1.0}, {"a": 5, "b": 10}, stamp=10))
    # b and the new user c were active after stamp 10; a was not: its v1 vector is kept
    writer.publish(_snap(2, {"a": 2.0, "b": 2.0, "c": 2.0}, {"a": 5, "b": 15, "c": 20}, stamp=20))
    assert reader.version() == 2
    assert reader.user_vector("a")[0] == 1.0  # carried over, not rewritten
    assert reader.user_vector("b")[0] == 2.0 and reader.user_vector("c")[0] == 2.0
    assert reader.meta()["users_base"] == "1"
    # a version with no base stamp (e.g. an old writer) is written whole
    writer.publish(_snap(3, {"a": 3.0, "b": 3.0, "c": 3.0}, {"a": 5, "b": 15, "c": 20}, stamp=5))
    assert reader.user_vector("a")[0] == 3.0 and reader.meta()["users_base"] == ""


def test_many_evicted_users_force_a_full_rewrite(redis_url, namespace):
    writer = Writer.from_url(redis_url, namespace=namespace, grace_s=0)
    reader = Reader.from_url(redis_url, namespace=namespace)
    many = {f"u{k}": 1.0 for k in range(500)}
    writer.publish(_snap(1, many, dict.fromkeys(many, 1), stamp=1))
    writer.publish(_snap(2, {"u0": 2.0}, {"u0": 2}, stamp=2))  # 499 users evicted meanwhile
    assert reader.meta()["users_base"] == ""
    assert reader.user_vector("u7") is None


@pytest.fixture(scope="module")
def contextual() -> Learner:
    """Items i0-i4 are popular on device d0, i5-i9 on d1; users are all one-offs."""
    s = ModelSettings(dim=16, min_count=1, context_fields=parse_fields("device"), seed=2)
    learner = Learner(s)
    rng = np.random.default_rng(1)
    for step in range(80):
        dev = rng.integers(0, 2, 256)
        item = dev * 5 + rng.integers(0, 5, 256)
        learner.learn(
            EventColumns(
                [f"u{step}-{k}" for k in range(256)],
                [f"i{x}" for x in item],
                np.full(256, 10_000 + step, np.int64),
                np.ones(256, np.float32),
                [{"device": f"d{d}"} for d in dev],
            )
        )
    return learner


def test_recommend_for_a_new_user_follows_context(redis_url, namespace, contextual):
    Writer.from_url(redis_url, namespace=namespace).publish(to_snapshot(contextual, 1, 0, {}))
    reader = Reader.from_url(redis_url, namespace=namespace)
    d0 = [r["item"] for r in reader.recommend_for(context={"device": "d0"}, k=5)]
    d1 = [r["item"] for r in reader.recommend_for(context={"device": "d1"}, k=5)]
    assert set(d0) == {f"i{k}" for k in range(5)}
    assert set(d1) == {f"i{k}" for k in range(5, 10)}
    # no history, no context: still an answer (popularity), and exclusions hold
    plain = reader.recommend_for(k=3, exclude=["i0"])
    assert len(plain) == 3 and "i0" not in [r["item"] for r in plain]
    # the tower agrees with the trainer's own view of such a user
    want = contextual.scoring.scores_for(["nobody"], [{"device": "d1"}])[0]
    top = [contextual.items.id_of(int(r)) for r in want.topk(5).indices]
    assert set(top) == set(d1)


def test_a_damaged_base_is_not_copied(redis_url, namespace):
    writer = Writer.from_url(redis_url, namespace=namespace, grace_s=0)
    reader = Reader.from_url(redis_url, namespace=namespace)
    writer.publish(_snap(1, {"a": 1.0, "b": 1.0}, {"a": 5, "b": 10}, stamp=10))
    writer.client.unlink(writer.layout.user(1))  # someone deleted the base's users
    writer.publish(_snap(2, {"a": 2.0, "b": 2.0}, {"a": 5, "b": 15}, stamp=20))
    assert reader.version() == 2 and reader.meta()["users_base"] == ""
    assert reader.user_vector("a")[0] == 2.0
