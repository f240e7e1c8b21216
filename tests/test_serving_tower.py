"""The published query tower computes, with numpy alone, the ψ the trainer computes."""

from __future__ import annotations

import numpy as np
import torch

from store.tower import QueryTower
from trainer.core.features import parse_fields
from trainer.core.learner import EventColumns, Learner
from trainer.core.settings import ModelSettings
from trainer.daemon.serving import export_tower


def _learner(layers: tuple[int, ...], history_decay: float = 1.0) -> Learner:
    s = ModelSettings(
        dim=8,
        layers=layers,
        history_decay=history_decay,
        min_count=1,
        history=5,
        context_fields=parse_fields("device,price:num"),
        seed=4,
    )
    learner = Learner(s)
    rng = np.random.default_rng(0)
    for step in range(20):
        n = 128
        dev = rng.integers(0, 3, n)
        learner.learn(
            EventColumns(
                [f"u{k}" for k in rng.integers(0, 50, n)],
                [f"i{k}" for k in rng.integers(0, 80, n)],
                np.full(n, 1_000 + step, np.int64),
                np.ones(n, np.float32),
                [
                    {"device": f"d{d}", "price": float(p)}
                    for d, p in zip(dev, rng.normal(50, 10, n), strict=True)
                ],
            )
        )
    return learner


def test_numpy_tower_matches_the_trainer_for_a_new_user():
    for layers in ((), (16,)):
        learner = _learner(layers)
        tower = QueryTower.from_bytes(export_tower(learner).to_bytes())
        recent = ["i3", "i7", "i11"]
        rows = learner.items.lookup(recent)
        vectors = learner.scoring.item_vectors(rows).numpy()
        ctx = {"device": "d1", "price": 61.5, "unknown": "x"}
        got = tower.query(vectors, ctx)
        # the trainer's view of a never-seen user whose pending history holds those items
        learner.history.pending["newcomer"] = rows.tolist()
        want = learner.scoring.query_for(["newcomer"], [ctx])[0].numpy()
        assert got.shape == (9,) and got[-1] == 1.0
        np.testing.assert_allclose(got[:-1], want, rtol=1e-4, atol=1e-5)


def test_empty_history_and_context_give_a_finite_query():
    learner = _learner(())
    tower = QueryTower.from_bytes(export_tower(learner).to_bytes())
    q = tower.query(np.zeros((0, 9), np.float32), None)
    assert np.isfinite(q).all() and torch.isfinite(learner.scoring.query_for(["nobody"])).all()


def test_a_recency_weighted_history_is_served_as_it_is_trained():
    """With --history-decay, the published tower weighs recent items as the trainer does, and
    the trainer's view of a user known by recent items (query_recent) agrees."""
    learner = _learner((16,), history_decay=0.6)
    tower = QueryTower.from_bytes(export_tower(learner).to_bytes())
    recent = ["i3", "i7", "i11", "i20"]
    vectors = learner.scoring.item_vectors(learner.items.lookup(recent)).numpy()
    ctx = {"device": "d2", "price": 40.0}
    got = tower.query(vectors, ctx)
    want = learner.scoring.query_recent([recent], [ctx])[0].numpy()
    np.testing.assert_allclose(got[:-1], want, rtol=1e-4, atol=1e-5)
    plain = QueryTower.from_bytes(export_tower(_learner((16,))).to_bytes())
    assert tower.history_decay == 0.6 and plain.history_decay == 1.0
