"""WALS-style matrix factorisation with an unobserved weight w0, via `implicit`'s ALS.

WALS minimises Σ_observed r_ui·(1 − u·v)² + w0·Σ_unobserved (u·v)² + λ_w(‖U‖² + ‖V‖²).
`implicit` minimises Σ_all c_ui·(p_ui − u·v)² + λ_i(‖U‖² + ‖V‖²) with confidence c_ui = α·r_ui
on observed entries (p = 1) and 1 on unobserved ones (p = 0). Dividing its objective by α gives
WALS exactly: observed weight r_ui, unobserved weight 1/α, regulariser λ_i/α. So
    α = 1 / w0   and   λ_i = λ_w / w0.
A small w0 (large α) trusts the positives and barely pushes unobserved pairs apart (folding);
a large w0 pushes every unobserved score towards 0.

On a stream the model is refitted every `retrain_every` events on all events so far (a periodic
batch job). Between fits, a user with events since the last fit is folded in (one least-squares
solve against the fitted item factors, `recalculate_user`); a user never seen gets the mean
user vector (the usual heuristic: MF has no query features to go on).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from bench.models import Batch


class WALS:
    def __init__(
        self,
        name: str = "wals",
        w0: float = 0.01,
        reg: float = 0.01,
        factors: int = 64,
        iterations: int = 10,
        retrain_every: int = 20_000,
        seed: int = 0,
    ) -> None:
        if not w0 > 0:
            raise ValueError(f"w0 must be > 0, got {w0}")
        self.name = name
        self.w0, self.reg, self.factors = w0, reg, factors
        self.iterations, self.retrain_every, self.seed = iterations, retrain_every, seed
        self._users: list[np.ndarray] = []
        self._items: list[np.ndarray] = []
        self.events = 0
        self.fitted_at = 0  # events in the last fit
        self.fit_seconds: list[float] = []
        self._als = None
        self._fit_matrix: sp.csr_matrix | None = None
        self._touched: set[int] = set()  # users with events since the last fit

    def learn(self, batch: Batch) -> None:
        self._users.append(batch.users.astype(np.int32))
        self._items.append(batch.items.astype(np.int32))
        self.events += len(batch)
        self._touched.update(np.unique(batch.users).tolist())
        if self.events - self.fitted_at >= self.retrain_every or self._als is None:
            self.fit()

    def _matrix(self) -> sp.csr_matrix:
        u, i = np.concatenate(self._users), np.concatenate(self._items)
        self._users, self._items = [u], [i]
        shape = (int(u.max()) + 1, int(i.max()) + 1)
        m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
        m.sum_duplicates()  # r_ui = number of events of the pair
        return m

    def fit(self) -> None:
        """Refit on every event so far (also what `scores` uses after a holdout cut)."""
        from implicit.cpu.als import AlternatingLeastSquares

        started = time.perf_counter()
        m = self._matrix()
        with threadpool_limits(1, "blas"):  # implicit's own threads do the work
            als = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.reg / self.w0,
                alpha=1.0 / self.w0,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            als.fit(m, show_progress=False)
        self._als, self._fit_matrix = als, m
        self.fitted_at, self._touched = self.events, set()
        self.fit_seconds.append(time.perf_counter() - started)

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        als, m = self._als, self._fit_matrix
        assert als is not None and m is not None
        U = np.asarray(als.user_factors)
        out = np.empty((len(users), self.factors), np.float32)
        fitted = users < m.shape[0]
        stale = np.array([u in self._touched for u in users.tolist()], bool)
        keep = fitted & ~stale
        out[keep] = U[users[keep]]
        fold = stale
        if fold.any():
            rows = self._rows(users[fold], m)
            with threadpool_limits(1, "blas"):
                out[fold] = als.recalculate_user(np.arange(int(fold.sum())), rows)
        new = ~fitted & ~stale
        out[new] = U.mean(0)
        return out

    def _rows(self, users: np.ndarray, m: sp.csr_matrix) -> sp.csr_matrix:
        """The users' interactions so far, over the fitted items (newer items drop out)."""
        su, si = np.concatenate(self._users[1:]), np.concatenate(self._items[1:])
        keep = si < m.shape[1]
        since = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (su[keep], si[keep])),
            shape=(max(int(su.max()) + 1, m.shape[0]), m.shape[1]),
        )
        known = (users < m.shape[0]).astype(np.float32)
        fitted = sp.diags(known) @ m[np.minimum(users, m.shape[0] - 1)]
        rows = sp.csr_matrix(fitted + since[users])
        rows.sum_duplicates()
        return rows

    def scores(self, queries: Batch, n_items: int) -> torch.Tensor:
        if self._als is None:
            return torch.zeros(len(queries), n_items)
        return self._scores(self.user_vectors(queries.users), n_items)

    def scores_from_items(self, histories: list[np.ndarray], n_items: int) -> torch.Tensor:
        """Scores for users known only by these items: each folded in by one least-squares
        solve against the fitted item factors (items born after the fit drop out)."""
        als, m = self._als, self._fit_matrix
        if als is None or m is None:
            return torch.zeros(len(histories), n_items)
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        cols = np.concatenate(histories) if histories else np.empty(0, np.int64)
        keep = cols < m.shape[1]
        R = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
            shape=(len(histories), m.shape[1]),
        )
        with threadpool_limits(1, "blas"):
            U = als.recalculate_user(np.arange(len(histories)), R)
        return self._scores(np.asarray(U), n_items)

    def _scores(self, U: np.ndarray, n_items: int) -> torch.Tensor:
        assert self._als is not None
        V = np.asarray(self._als.item_factors)[:n_items]
        s = U @ V.T
        if s.shape[1] < n_items:  # items born after the fit have no factors yet: score 0
            s = np.pad(s, ((0, 0), (0, n_items - s.shape[1])))
        return torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32))
