"""Item-kNN: items scored by their cosine similarity to the items of the user's history.

sim(i, j) = |users with i and j| / sqrt(|users with i| · |users with j|), from every positive
so far (a user–item pair counts once). A user's score of j is Σ_{i in history} sim(i, j). The
item–item matrix is never built (Σ_u n_u² entries for heavy users): with X the binary
user × item matrix and H the queries' histories weighted by 1/sqrt(n_i),
    scores = ((H Xᵀ) X) / sqrt(n_j),
a sparse product, then a sparse × dense one, per chunk of queries. The user's own items score
too (sim(i, i) = 1): leave them out when ranking, as the evaluation does.

>>> m = ItemKNN()
>>> m.learn(Batch(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 2]), np.zeros(5, np.int64)))
>>> m.scores_from_items([np.array([0])], 3).round(decimals=3).tolist()
[[1.0, 1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from bench.models import Batch


class ItemKNN:
    def __init__(self, name: str = "item-kNN (cosine)") -> None:
        self.name = name
        self._users: list[np.ndarray] = []
        self._items: list[np.ndarray] = []
        self._X: sp.csr_matrix | None = None  # built on the first score after learning

    def learn(self, batch: Batch) -> None:
        self._users.append(batch.users.astype(np.int32))
        self._items.append(batch.items.astype(np.int32))
        self._X = None

    def fit(self) -> None:
        """Build the user × item matrix now (else the first score does)."""
        self._matrix()

    def _matrix(self) -> sp.csr_matrix:
        if self._X is None:
            u, i = np.concatenate(self._users), np.concatenate(self._items)
            self._users, self._items = [u], [i]
            X = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)))
            X.data[:] = 1.0  # a repeated pair counts once
            self._X = X
        return self._X

    def _scores(self, H: sp.csr_matrix, n_items: int) -> torch.Tensor:
        X = self._matrix()
        n = np.asarray(X.sum(0)).ravel()
        inv = np.where(n > 0, 1 / np.sqrt(np.maximum(n, 1)), 0).astype(np.float32)
        H = H @ sp.diags(inv)
        overlap = np.asarray((X @ H.T).todense(), np.float32)  # users × queries
        s = np.asarray(X.T @ overlap).T * inv  # sparse × dense: cost nnz(X) per query
        out = np.zeros((H.shape[0], n_items), np.float32)
        w = min(n_items, s.shape[1])
        out[:, :w] = s[:, :w]
        return torch.from_numpy(out)

    def scores_from_items(self, histories: list[np.ndarray], n_items: int) -> torch.Tensor:
        """Scores for users known only by these items (a cold user's first items)."""
        width = self._matrix().shape[1]
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        cols = np.concatenate(histories) if histories else np.empty(0, np.int64)
        known = cols < width  # an item it never learned says nothing
        H = sp.csr_matrix(
            (np.ones(int(known.sum()), np.float32), (rows[known], cols[known])),
            shape=(len(histories), width),
        )
        H.data[:] = 1.0
        return self._scores(H, n_items)

    def scores(self, queries: Batch, n_items: int) -> torch.Tensor:
        X = self._matrix()
        known = np.minimum(queries.users, X.shape[0] - 1)
        H = X[known].multiply((queries.users < X.shape[0])[:, None]).tocsr()
        return self._scores(H, n_items)
