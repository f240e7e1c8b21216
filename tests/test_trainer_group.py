"""Several learners, one model (the pure core): replicated parts stay identical to the bit."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from tests.clustered import Clustered
from trainer.core.learner import EventColumns, Learner
from trainer.core.settings import ModelSettings
from trainer.core.sync import owner


class ThreadSync:
    """A group of W learners on threads of one process: `share` through a barrier."""

    def __init__(self, rank: int, board: list[Any], barrier: threading.Barrier) -> None:
        self.rank, self.world = rank, len(board)
        self._board, self._barrier = board, barrier

    def share(self, mine: Any) -> list[Any]:
        self._barrier.wait()
        self._board[self.rank] = mine
        self._barrier.wait()
        out = list(self._board)
        self._barrier.wait()
        return out


def replicated(learner: Learner) -> dict[str, Any]:
    """What must be the same on every rank: the item side, the tower and the counts."""
    m, n = learner.model, learner.items.rows_used
    return {
        "item ids": learner.items.ids(),
        "items": m.items.weight[:n].clone(),
        "bias": m.item_bias.weight[:n].clone(),
        "tower": [p.detach().clone() for p in m.dense_opt.params],
        "counts": learner.counts.stored[:n].copy(),
        "sampler": learner.sampler.tree.tree.copy(),
        "in-batch": learner.in_batch.counts.stored[:n].copy(),
        "events": learner.events_applied,
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _group(world: int, settings: ModelSettings, batches: list[list[EventColumns]]):
    board: list[Any] = [None] * world
    barrier = threading.Barrier(world)
    learners = [Learner(settings, sync=ThreadSync(r, board, barrier)) for r in range(world)]
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            for step in batches:
                learners[rank].learn(step[rank])
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return learners


@pytest.mark.parametrize("keyed", [True, False])
def test_two_ranks_keep_the_item_side_identical_and_each_owns_its_users(keyed: bool) -> None:
    """Events split by user (as a producer keyed by user does) or at random (it does not):
    every event is learned once, by its user's owner, and the replicated parts stay equal."""
    torch.set_num_threads(1)
    s = ModelSettings(dim=8, min_count=2, buckets=4, history=5, seed=2)
    data = Clustered(users=300, items=600, seed=3)
    rng = np.random.default_rng(4)
    steps = []
    for k in range(12):
        b = data.batch(256)
        side = owner(b.users, 2) if keyed else rng.integers(0, 2, len(b))
        if k == 5:
            side[:] = 0  # a step where rank 1 has nothing of its own
        steps.append([b.take(side == 0), b.take(side == 1)])
    a, b = _group(2, s, steps)
    ra, rb = replicated(a), replicated(b)
    assert all(_same(ra[k], rb[k]) for k in ra), [k for k in ra if not _same(ra[k], rb[k])]
    assert a.events_applied == b.events_applied == 12 * 256
    users_a = {i for i in a.users.ids() if i is not None}
    users_b = {i for i in b.users.ids() if i is not None}
    assert users_a and users_b and not users_a & users_b  # each user has one owner
    assert (owner(sorted(users_a), 2) == 0).all() and (owner(sorted(users_b), 2) == 1).all()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_a_group_state_is_dealt_again_to_any_number_of_ranks(world: int) -> None:
    """Cut two ranks' states into the shared part and their own, put them back together for W
    ranks: every user lands on its owner under W, and is served exactly as before."""
    from trainer.daemon.groupstate import merge, split

    torch.set_num_threads(1)
    s = ModelSettings(dim=8, min_count=2, buckets=4, history=5, seed=2)
    data = Clustered(users=300, items=600, seed=5)
    steps = []
    for _ in range(8):
        b = data.batch(256)
        side = owner(b.users, 2)
        steps.append([b.take(side == 0), b.take(side == 1)])
    group = _group(2, s, steps)
    pieces = [split(*learner.state()) for learner in group]
    shared, shared_meta = pieces[0][0], pieces[0][1]
    parts = [(own, own_meta) for _, _, own, own_meta in pieces]
    served = {}
    for learner in group:
        ids = [i for i in learner.users.ids()[s.buckets :] if i is not None]
        served.update(zip(ids, learner.scoring.scores_for(ids), strict=True))
    seen = set()
    for rank in range(world):
        again = Learner(s)
        again.load_state(*merge(shared, shared_meta, parts, rank, world, s))
        ids = [i for i in again.users.ids()[s.buckets :] if i is not None]
        assert (owner(ids, world) == rank).all()
        seen |= set(ids)
        got = again.scoring.scores_for(ids)
        for k, uid in enumerate(ids):
            assert torch.allclose(got[k], served[uid], atol=1e-6), uid
    assert seen == set(served)  # every user, once
