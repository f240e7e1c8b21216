"""The vocabulary stays bounded: admission after min-count sightings, eviction, row reuse,
and ids mapping to the same rows after a restart."""

from __future__ import annotations

import numpy as np
import torch

from trainer.core.learner import EventColumns, Learner
from trainer.core.settings import ModelSettings
from trainer.core.sketch import CountMinSketch
from trainer.core.vocab import Vocabulary


def _cols(users, items, ts, contexts=None) -> EventColumns:
    n = len(users)
    return EventColumns(
        list(users), list(items), np.full(n, ts, dtype=np.int64), np.ones(n, np.float32), contexts
    )


def test_an_id_gets_its_own_row_after_min_count_sightings():
    v = Vocabulary(min_count=3, buckets=4)
    rows = [int(v.add(["new"], np.array([t]))[0]) for t in range(3)]
    assert rows[0] < 4 and rows[1] < 4  # shared bucket, the same one both times
    assert rows[0] == rows[1]
    assert rows[2] >= 4 and v.row("new") == rows[2]
    assert v.admitted == 1 and len(v) == 1


def test_stale_ids_are_evicted_and_their_rows_reused():
    v = Vocabulary(min_count=1, buckets=2, evict_after_ms=1000)
    a, b = v.add(["a", "b"], np.array([0, 5000])).tolist()
    freed = v.evict(now_ms=5500)
    assert freed.tolist() == [a] and v.row("a") is None and v.row("b") == b
    assert v.take_freed().tolist() == [a]
    c = int(v.add(["c"], np.array([6000]))[0])
    assert c == a  # reused, not grown
    assert v.rows_used == 4 and v.evicted == 1


def test_row_cap_evicts_the_least_recently_seen():
    v = Vocabulary(min_count=1, buckets=1, max_rows=11)
    v.add([f"id{k}" for k in range(10)], np.arange(10))
    v.add(["fresh"], np.array([100]))
    assert v.rows_used == 11 and v.row("id0") is None and v.row("fresh") is not None
    assert v.row("id9") is not None


def test_a_flood_of_one_off_ids_gets_no_rows():
    v = Vocabulary(min_count=2, buckets=8, sketch_width=1 << 16)
    for start in range(0, 200_000, 1000):
        v.add([f"once-{k}" for k in range(start, start + 1000)], np.zeros(1000))
    # a handful may collide in the sketch; none of 200k one-offs should cost a row each
    assert len(v) < 200
    assert v.rows_used < 8 + 200


def test_sketch_never_undercounts():
    s = CountMinSketch(width=1 << 10)
    ids = [f"x{k % 50}" for k in range(500)]
    est = s.add(ids)
    assert (est[-50:] >= 10).all()


def test_learner_restart_maps_ids_to_the_same_rows():
    s = ModelSettings(dim=8, min_count=2, buckets=4, evict_after_ms=10_000)
    learner = Learner(s)
    users = [f"u{k % 30}" for k in range(200)]
    items = [f"i{k % 40}" for k in range(200)]
    learner.learn(_cols(users, items, 1_000))
    learner.learn(_cols(users, items, 2_000))
    tensors, meta = learner.state()
    resumed = Learner.from_state(s, tensors, meta)
    assert resumed.users.lookup(users).tolist() == learner.users.lookup(users).tolist()
    assert resumed.items.lookup(items).tolist() == learner.items.lookup(items).tolist()
    # an eviction sweep in event time frees idle rows in both, identically
    later = _cols(["u0"] * 64, ["i0"] * 64, 60_000)
    learner.batches = resumed.batches = 0  # sweep on the next batch
    learner.learn(later)
    resumed.learn(later)
    assert len(learner.items) == len(resumed.items) == 1
    # all 40 items went idle; i0 came back at once (its sightings are still counted)
    assert learner.items.evicted == resumed.items.evicted == 40
    rows = learner.users.admitted_rows()
    assert torch.allclose(learner.scoring.scores(rows), resumed.scoring.scores(rows), atol=1e-5)


def test_evicted_item_rows_leave_histories_and_counts():
    s = ModelSettings(dim=8, min_count=1, buckets=2, evict_after_ms=10_000, history=4)
    learner = Learner(s)
    learner.learn(_cols(["u1", "u2"], ["old", "keep"], 1_000))
    old = learner.items.row("old")
    learner.batches = 0
    learner.learn(_cols(["u2"], ["keep"], 20_000))
    assert learner.items.row("old") is None
    assert old not in learner.history.items[: learner.users.rows_used]
    assert learner.counts.stored[old] == 0 and not learner.item_valid[old]


def test_context_fields_reach_the_query_tower():
    s = ModelSettings(dim=8, min_count=1, context_fields=(), activity_features=False, seed=1)
    from trainer.core.features import parse_fields

    with_ctx = ModelSettings(dim=8, min_count=1, context_fields=parse_fields("device"), seed=1)
    learner = Learner(with_ctx)
    rng = np.random.default_rng(0)
    for _ in range(60):  # the item is decided by the device alone
        dev = rng.integers(0, 2, 256)
        learner.learn(
            _cols(
                [f"u{k}" for k in rng.integers(0, 500, 256)],
                [f"i{d}" for d in dev],
                1_000,
                [{"device": f"d{d}"} for d in dev],
            )
        )
    scores = learner.scoring.scores_for(
        ["never-seen", "never-seen"], [{"device": "d0"}, {"device": "d1"}]
    )
    i0, i1 = learner.items.row("i0"), learner.items.row("i1")
    assert scores[0, i0] > scores[0, i1] and scores[1, i1] > scores[1, i0]
    assert Learner(s).model.tower[0].in_features == 16  # no context: user + history only


def test_a_new_item_starts_near_items_that_share_its_features():
    from trainer.core.features import parse_fields

    s = ModelSettings(dim=16, min_count=1, item_features=parse_fields("item_category"), seed=3)
    learner = Learner(s)
    rng = np.random.default_rng(0)
    for step in range(40):  # users of group g read items of category g
        g = rng.integers(0, 2, 256)
        items = [f"{'ab'[x]}{k}" for x, k in zip(g, rng.integers(0, 20, 256), strict=True)]
        learner.learn(
            _cols(
                [f"u{x}-{k}" for x, k in zip(g, rng.integers(0, 50, 256), strict=True)],
                items,
                1_000 + step,
                [{"item_category": "ab"[x]} for x in g],
            )
        )
    # a brand-new item of category "a", seen once by someone of group b (its first sighting)
    learner.learn(_cols(["u1-0"], ["a-new"], 2_000, [{"item_category": "a"}]))
    rows = learner.items.lookup(["a-new", "a0", "a1", "b0", "b1"])
    v = torch.nn.functional.normalize(learner.scoring.item_vectors(rows), dim=1)
    same, other = float(v[0] @ v[1:3].mean(0)), float(v[0] @ v[3:5].mean(0))
    assert same > other + 0.3, (same, other)


def test_at_the_cap_two_ids_of_one_call_never_share_a_row():
    """Making room evicts only ids the call does not name, nor ids it just admitted."""
    v = Vocabulary(min_count=1, buckets=0, max_rows=4)
    v.add(["a", "b", "c", "d"])
    rows = v.add(["a", "e"])
    assert rows[0] != rows[1] and v.row("a") == rows[0] and v.row("e") == rows[1]
    w = Vocabulary(min_count=1, buckets=4, max_rows=400)
    w.add([f"old{k}" for k in range(396)])
    burst = w.add([f"new{k}" for k in range(12)])
    assert len(set(burst.tolist())) == 12 and (burst >= 4).all()
    # a call naming every admitted id: a new one waits in its bucket, nobody is evicted
    full = Vocabulary(min_count=1, buckets=2, max_rows=5)
    ids = ["p", "q", "r"]
    full.add(ids)
    rows = full.add([*ids, "s"])
    assert rows[3] < 2 and [full.row(i) for i in ids] == rows[:3].tolist()
