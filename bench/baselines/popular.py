"""Most-popular baselines: the same ranking for everyone, from counts all-time or decayed.

Decayed popularity (counts halved every `half_life_ms` of event time) is the strong baseline on
trending streams: it follows what is hot now, which a personal model must beat.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.models import Batch


class MostPopular:
    """Items ranked by how often they occurred so far."""

    def __init__(self, name: str = "most-popular") -> None:
        self.name = name
        self.counts = np.zeros(0)

    def _grow(self, n: int) -> None:
        if n > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(max(n, 2 * len(self.counts)))])

    def learn(self, batch: Batch) -> None:
        self._grow(int(batch.items.max()) + 1)
        self.counts += np.bincount(batch.items, minlength=len(self.counts))

    def scores(self, queries: Batch, n_items: int) -> torch.Tensor:
        return self._ranking(len(queries), n_items)

    def scores_from_items(self, histories: list[np.ndarray], n_items: int) -> torch.Tensor:
        return self._ranking(len(histories), n_items)

    def _ranking(self, n: int, n_items: int) -> torch.Tensor:
        self._grow(n_items)
        row = torch.from_numpy(self.counts[:n_items].astype(np.float32))
        return row.expand(n, -1)


class DecayedPopular(MostPopular):
    """Items ranked by counts decayed in event time: each count halves every `half_life_ms`.

    >>> p = DecayedPopular(half_life_ms=1000)
    >>> p.learn(Batch(np.array([0]), np.array([0]), np.array([0])))
    >>> p.learn(Batch(np.array([0]), np.array([1]), np.array([2000])))
    >>> p.counts[:2].tolist()
    [0.25, 1.0]
    """

    def __init__(self, half_life_ms: float, name: str = "popular-decayed") -> None:
        super().__init__(name)
        self.half_life_ms = half_life_ms
        self.now_ms: float | None = None

    def learn(self, batch: Batch) -> None:
        now = float(batch.ts.max())
        if self.now_ms is not None and now > self.now_ms:
            self.counts *= 0.5 ** ((now - self.now_ms) / self.half_life_ms)
        self.now_ms = now if self.now_ms is None else max(now, self.now_ms)
        self._grow(int(batch.items.max()) + 1)
        age = self.now_ms - batch.ts.astype(np.float64)
        np.add.at(self.counts, batch.items, 0.5 ** (age / self.half_life_ms))
