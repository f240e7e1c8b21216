"""The learner's core: it learns clusters, its state round-trips exactly, weights act."""

from __future__ import annotations

import numpy as np
import torch

from tests.clustered import Clustered
from trainer.core.evaluation import ranks_of
from trainer.core.learner import EventColumns, Learner
from trainer.core.loss import full_softmax_loss
from trainer.core.settings import ModelSettings


def _full_loss(learner: Learner, cols: EventColumns) -> float:
    u = learner.users.lookup(cols.users)
    i = learner.items.lookup(cols.items)
    ok = (u >= 0) & (i >= 0)
    scores = learner.scoring.scores(u[ok])
    return float(full_softmax_loss(scores, torch.from_numpy(i[ok]), torch.ones(int(ok.sum()))))


def test_learns_clusters_and_beats_uniform():
    data = Clustered(seed=1)
    learner = Learner(ModelSettings(dim=16, seed=1))
    for _ in range(5):
        learner.learn(data.batch(512))
    test = data.batch(512)
    before = _full_loss(learner, test)
    for _ in range(80):
        learner.learn(data.batch(512))
    after = _full_loss(learner, test)
    assert after < before - 0.3
    assert after < np.log(data.items) - 0.5  # clearly better than a uniform guess
    users = learner.users.admitted_rows()[:50]
    top = learner.scoring.scores(users).topk(10).indices.numpy()
    ids, uids = learner.items.ids(), learner.users.ids()
    own = np.mean(
        [
            [data.item_cluster(ids[j]) == data.user_cluster(uids[r]) for j in top[k]]
            for k, r in enumerate(users)
        ]
    )
    assert own > 0.8  # chance is 1/4


def test_state_round_trip_resumes_exactly():
    """Train 6 batches straight vs 3, save/restore, 3 more: the same model (exactly-once state).

    Equal up to float round-off: BLAS kernels may sum in another order for other buffer
    alignments, so bit-equality is not promised; every input, draw and counter is equal."""
    s = ModelSettings(dim=8, layers=(16,), seed=3)
    data = Clustered(seed=5)
    batches = [data.batch(256) for _ in range(6)]
    straight = Learner(s)
    for b in batches:
        straight.learn(b)
    first = Learner(s)
    for b in batches[:3]:
        first.learn(b)
    tensors, meta = first.state()
    resumed = Learner.from_state(s, tensors, meta)
    for b in batches[3:]:
        resumed.learn(b)
    users = straight.users.admitted_rows()
    assert torch.allclose(straight.scoring.scores(users), resumed.scoring.scores(users), atol=1e-5)
    assert straight.items.ids() == resumed.items.ids()
    assert resumed.events_applied == straight.events_applied == 6 * 256


def test_zero_weight_events_do_not_move_the_model():
    s = ModelSettings(dim=8, seed=0)
    cols = Clustered(seed=2).batch(64)
    weighted, zero = Learner(s), Learner(s)
    before = zero.model.item_bias.weight.clone(), zero.model.tower[0].weight.clone()
    weighted.learn(cols)
    zero.learn(EventColumns(cols.users, cols.items, cols.ts, np.zeros(64, np.float32)))
    n = zero.items.rows_used
    assert not torch.equal(weighted.model.item_bias.weight[:n], before[0][:n])
    assert torch.equal(zero.model.item_bias.weight[:n], before[0][:n])
    assert torch.equal(zero.model.tower[0].weight, before[1])


def test_new_ids_grow_tables_without_restart():
    learner = Learner(ModelSettings(dim=4, min_count=1))
    n = 3000  # beyond the initial capacity of 1024 rows
    cols = EventColumns(
        [f"u{k}" for k in range(n)],
        [f"i{k}" for k in range(n)],
        np.arange(n, dtype=np.int64),
        np.ones(n, np.float32),
    )
    learner.learn(cols)
    assert len(learner.users) == len(learner.items) == n
    assert learner.model.items.capacity >= n
    rows = learner.users.lookup(["u0", f"u{n - 1}"])
    assert torch.isfinite(learner.scoring.scores(rows)).any(dim=1).all()


def test_every_strategy_trains_and_improves():
    """Each negative strategy (hard negatives with and without a popularity pool) learns.
    (`none` is left out: on positives alone the full-softmax loss barely moves — folding.)"""
    for spec in ("in-batch,hard:8", "popularity:64,hard:8", "uniform:32", "full"):
        from trainer.core.negatives import parse_negatives

        data = Clustered(seed=4)
        settings = ModelSettings(dim=16, seed=4, min_count=1, negatives=parse_negatives(spec))
        learner = Learner(settings)
        for _ in range(3):  # every id known, so the before/after losses cover the same pairs
            learner.learn(data.batch(512))
        test = data.batch(512)
        before = _full_loss(learner, test)
        for _ in range(30):
            stats = learner.learn(data.batch(512))
        assert np.isfinite(stats.loss), spec
        assert _full_loss(learner, test) < before - 0.1, spec


def test_ties_count_against_the_target():
    """A model that scores every item alike gets no hit from the tie (recall@10 of 0, not 1)."""
    flat = torch.zeros(3, 50)
    assert (ranks_of(flat, torch.tensor([0, 7, 49])) == 49).all()
    assert ranks_of(torch.tensor([[1.0, 2.0, 2.0]]), torch.tensor([1])).tolist() == [1]


def test_a_pending_user_is_trained_as_it_is_served_without_an_embedding():
    """Users not admitted yet share bucket rows; they are trained from history and context
    alone, as they are served, so the bucket rows never move."""
    s = ModelSettings(dim=8, min_count=3, buckets=4, seed=1)
    learner = Learner(s)
    data = Clustered(users=5000, seed=2)  # most users appear once or twice: pending
    for _ in range(10):
        learner.learn(data.batch(256))
    assert len(learner.users) < 5000 and learner.events_applied == 2560
    assert torch.count_nonzero(learner.model.users.weight[: s.buckets]) == 0


def test_the_popularity_prior_of_a_batch_excludes_the_batch():
    """The prior a positive's logit gets counts only earlier events: an item first seen in this
    batch has prior 0 while it is learned (counting it first would leak the label)."""
    s = ModelSettings(dim=8, min_count=1, buckets=0, seed=1)
    learner = Learner(s)
    seen: list[float] = []
    original = learner.scoring.prior

    def spy(rows, now_ms=None):
        out = original(rows, now_ms)
        if rows is not None and len(rows) and learner.items.row("fresh") in rows.tolist():
            seen.append(float(out[rows.tolist().index(learner.items.row("fresh"))]))
        return out

    learner.scoring.prior = spy  # type: ignore[method-assign]
    t = 1_700_000_000_000
    cols = EventColumns(["u"] * 4, ["old"] * 4, np.full(4, t), np.ones(4, np.float32))
    learner.learn(cols)
    learner.learn(EventColumns(["u", "v"], ["old", "fresh"], np.full(2, t + 1), np.ones(2, "f4")))
    assert seen and seen[0] == 0.0
    assert float(original(np.array([learner.items.row("fresh")]))[0]) > 0  # counted after


def test_a_late_event_weighs_like_a_timely_one_in_in_batch_q():
    """In-batch q is the share of recent positives in arrival order: an event 70 days late for
    a rare item gets the q of a timely one (a decay in event time gave it 2^-10 of it)."""
    learner = Learner(ModelSettings(dim=8, min_count=1, buckets=0, seed=1))
    data = Clustered(seed=4)
    for _ in range(4):
        learner.learn(data.batch(512))
    now = int(data.ts)
    late = now - 70 * 86_400_000
    learner.learn(
        EventColumns(
            ["a", "b"], ["rare-late", "rare-timely"], np.array([late, now]), np.ones(2, "f4")
        )
    )
    q = learner.in_batch.share(learner.items.lookup(["rare-late", "rare-timely"]))
    assert 0.5 < q[0] / q[1] < 2


def test_resuming_is_exact_after_tables_grew_past_their_first_capacity():
    """Tables grow by doubling, drawing new rows' initial values from one generator: a resumed
    learner must grow at the same points (and keep the Gramian) to make the same steps."""
    s = ModelSettings(dim=8, min_count=1, buckets=0, gravity=0.05, seed=7)
    data = Clustered(users=300, items=9000, affinity=0.0, seed=8)
    batches = [data.batch(1024) for _ in range(6)]
    straight = Learner(s)
    for b in batches:
        straight.learn(b)
    first = Learner(s)
    for b in batches[:4]:
        first.learn(b)
    assert first.items.rows_used > 2048
    resumed = Learner.from_state(s, *first.state())
    for b in batches[4:]:
        resumed.learn(b)
    n = straight.items.rows_used
    assert straight.items.rows_used > 4096  # grew again after the resume
    diff = (straight.model.items.weight[:n] - resumed.model.items.weight[:n]).abs().max()
    assert diff < 1e-5
    assert straight.gram is not None and resumed.gram is not None
    gap = (straight.gram.gram - resumed.gram.gram).norm() / straight.gram.gram.norm()
    assert gap < 1e-6  # float round-off only (BLAS may sum in another order)


def test_an_event_of_weight_0_changes_nothing_but_the_applied_count():
    s = ModelSettings(dim=8, min_count=1, buckets=0, seed=2)
    data = Clustered(seed=6)
    batches = [data.batch(128) for _ in range(3)]
    with_zeros, without = Learner(s), Learner(s)
    t = int(batches[-1].ts[-1])
    for b in batches:
        without.learn(b)
        zeros = EventColumns(
            ["z1", b.users[0]], ["zi", b.items[1]], np.full(2, t), np.zeros(2, "f4")
        )
        mixed = EventColumns(
            b.users + zeros.users,
            b.items + zeros.items,
            np.concatenate([b.ts, zeros.ts]),
            np.concatenate([b.weights, zeros.weights]),
        )
        with_zeros.learn(mixed)
    assert with_zeros.events_applied == without.events_applied + 6
    assert with_zeros.users.ids() == without.users.ids()
    assert with_zeros.items.ids() == without.items.ids()
    users = without.users.admitted_rows()
    assert torch.equal(with_zeros.scoring.scores(users), without.scoring.scores(users))


def test_mask_own_leaves_a_user_s_other_positives_out_of_its_negatives():
    from trainer.core.negatives import draw, parse_negatives

    u = np.array([0, 0, 1, 2, 2, 2])
    i = np.array([10, 11, 10, 12, 13, 14])
    hist = np.array([[20, -1]] * 6)

    def masked(mode: str) -> set[tuple[int, int]]:
        learner = Learner(
            ModelSettings(dim=4, mask_own=mode, negatives=parse_negatives("in-batch"))
        )
        learner.in_batch.update(i)
        neg = draw(
            learner.settings.negatives, i, learner.sampler, learner.in_batch, 30, 8, learner.rng
        )
        q, c = learner.step._own(u, i, hist, neg)
        return set(zip(q.tolist(), neg.rows[c.numpy()].tolist(), strict=True))

    none, batch, history = masked("none"), masked("batch"), masked("history")
    # always: the query's own positive (item 10 is a positive of queries 0 and 2)
    assert none == {(0, 10), (1, 11), (2, 10), (3, 12), (4, 13), (5, 14)}
    assert (0, 11) not in none and (0, 11) in batch  # user 0's other positive
    assert (3, 13) in batch and (3, 14) in batch and (2, 11) not in batch
    assert none <= batch  # accidental hits stay masked
    assert batch <= history and (2, 20) not in history  # no column holds item 20 here


def test_a_learned_prior_weight_moves_and_is_what_is_served():
    data = Clustered(seed=9)
    s = ModelSettings(dim=8, learn_prior=True, prior_half_lives=(3_600_000.0, 30 * 86_400_000.0))
    learner = Learner(s)
    start = learner.model.prior_weight.detach().clone()
    for _ in range(30):
        learner.learn(data.batch(256))
    w = learner.model.prior_weight.detach()
    assert w.shape == (2,) and not torch.equal(w, start)
    rows, _, offset = learner.scoring.item_matrix()
    bias = learner.model.item_bias.weight[torch.from_numpy(rows), 0]
    now = learner.last_ts
    logs = torch.stack(
        [torch.from_numpy(np.log1p(c.at(rows, now))).float() for c in learner.prior_counts]
    )
    assert torch.allclose(offset, bias + w @ logs, atol=1e-5)
