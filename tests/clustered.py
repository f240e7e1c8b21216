"""A tiny clustered stream as EventColumns, for unit tests of the learner (no I/O)."""

from __future__ import annotations

import numpy as np

from trainer.core.learner import EventColumns


class Clustered:
    """Users and items in K clusters; a user picks in-cluster items with prob `affinity`."""

    def __init__(self, users=400, items=800, clusters=4, affinity=0.9, seed=0):
        self.users, self.items, self.k, self.affinity = users, items, clusters, affinity
        self.rng = np.random.default_rng(seed)
        self.ts = 1_700_000_000_000

    def user_cluster(self, user: str) -> int:
        return int(user) % self.k

    def item_cluster(self, item: str) -> int:
        return int(item[1:]) % self.k

    def batch(self, size: int) -> EventColumns:
        u = self.rng.integers(0, self.users, size)
        inside = self.rng.random(size) < self.affinity
        own = self.rng.integers(0, self.items // self.k, size) * self.k + u % self.k
        it = np.where(inside, own, self.rng.integers(0, self.items, size))
        ts = self.ts + np.arange(size) * 1000
        self.ts += size * 1000
        return EventColumns(
            [str(x) for x in u],
            [f"i{x}" for x in it],
            ts.astype(np.int64),
            np.ones(size, np.float32),
        )
