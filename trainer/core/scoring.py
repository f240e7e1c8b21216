"""Scoring: ψ for any user, the scores of the whole catalogue, and the item side as served.

score(x, j) = ψ(x)·Ṽ_j + b_j + w·log(1 + c_j). A `Scorer` reads a learner's parts at call time
and changes nothing; progressive evaluation, the benchmarks, the writer's snapshot and the tests
all score through it, so they see the model exactly as it would be served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainer.core.activity import for_recent
from trainer.core.history import EMPTY, history_mean, recency_weights

if TYPE_CHECKING:
    from trainer.core.learner import Learner


class Scorer:
    def __init__(self, learner: Learner) -> None:
        self._lr = learner

    def prior(self, rows: np.ndarray, now_ms: float | None = None) -> torch.Tensor:
        """The popularity logit offset Σ_h w_h·log(1 + c_h) of item rows, c_h their counts
        decayed with half-life h (0 when off); it carries w's gradient when w is learned."""
        lr = self._lr
        s = lr.settings
        if len(rows) == 0 or (s.popularity_prior == 0 and not s.learn_prior):
            return torch.zeros(len(rows))
        logs = np.zeros((len(lr.prior_counts), len(rows)))
        for h, counts in enumerate(lr.prior_counts):
            if counts.ref_ms is not None:  # nothing counted yet: 0
                now = now_ms if now_ms is not None else max(lr.last_ts, counts.ref_ms)
                logs[h] = np.log1p(counts.at(rows, now))
        return lr.model.prior_weight @ torch.from_numpy(logs).float()

    @torch.no_grad()
    def item_vectors(self, rows: np.ndarray) -> torch.Tensor:
        """Ṽ of item rows: own vector + item-feature term."""
        m = self._lr.model
        V = m.items.weight[torch.from_numpy(rows)]
        term = m.feature_term(self._lr.item_features.rows[rows])
        return V if term is None else V + term

    @torch.no_grad()
    def score_all(self, psi: torch.Tensor, valid: np.ndarray | None = None) -> torch.Tensor:
        """Scores of every row for queries ψ (B, n_rows); rows that are not items get -inf."""
        lr = self._lr
        m = lr.model
        n = lr.items.rows_used
        scores = psi @ m.items.weight[:n].T + m.item_bias.weight[:n, 0] + self.prior(np.arange(n))
        feats = lr.item_features.rows[:n]
        for f, table in enumerate(m.item_feats):  # ψ·F_f gathered per item: no (n, d) copy
            have = feats[:, f] >= 0
            scores[:, torch.from_numpy(have)] += (psi @ table.weight.T)[
                :, torch.from_numpy(feats[have, f])
            ]
        mask = lr.item_valid[:n] if valid is None else valid[:n]
        return scores.masked_fill_(~torch.from_numpy(mask).unsqueeze(0), float("-inf"))

    def query(
        self,
        user_rows: np.ndarray,
        ids: list[str],
        contexts: list[dict[str, Any]],
        cold: np.ndarray | None = None,
    ) -> torch.Tensor:
        """ψ of user rows; `cold` users (no row of their own) are served without an embedding."""
        lr = self._lr
        m = lr.model
        user_vecs = m.users.weight[torch.from_numpy(user_rows)]
        if cold is None:
            cold = user_rows < lr.users.buckets
        if cold.any():
            user_vecs = user_vecs.masked_fill(torch.from_numpy(cold).unsqueeze(1), 0.0)
        hist, ages = lr.history.get_with_ages(user_rows, ids, lr.users.buckets)
        cat_rows, nums = lr.context.encode(contexts)
        if lr.settings.activity_features:  # as of now: the user's next event
            pending = lr.history.pending_count(ids) if cold.any() else [0] * len(ids)
            now = lr.activity.now(user_rows, ~cold, lr.last_ts, pending)
            nums = np.concatenate([nums, now], 1)
        pooled = self.pooled_history(hist, ages)
        return m.query(user_vecs, pooled, m.context_inputs(cat_rows, nums))

    def pooled_history(self, hist: np.ndarray, ages: np.ndarray) -> torch.Tensor:
        """The (recency-weighted) mean of the Ṽ of each row's history items (B, d)."""
        valid = hist != EMPTY
        Vf = self.item_vectors(hist[valid]) if valid.any() else torch.zeros(1, self._lr.model.dim)
        local = np.full(hist.shape, EMPTY, dtype=np.int64)
        local[valid] = np.arange(int(valid.sum()))
        return history_mean(Vf, local, recency_weights(ages, self._lr.settings.history_decay))

    @torch.no_grad()
    def query_for(
        self, users: list[str], contexts: list[dict[str, Any]] | None = None
    ) -> torch.Tensor:
        """ψ for any user ids (known, pending or never seen), with optional contexts."""
        lr = self._lr
        rows = lr.users.lookup(users, pending_to_bucket=True)
        unknown = rows < 0
        rows = np.where(unknown, 0, rows)
        cold = unknown | (rows < lr.users.buckets)
        return self.query(rows, users, contexts or [{}] * len(users), cold)

    @torch.no_grad()
    def query_recent(
        self, recent: list[list[str]], contexts: list[dict[str, Any]] | None = None
    ) -> torch.Tensor:
        """ψ of users known only by their recent item ids (oldest first) and contexts: what
        `store.Reader.recommend_for` computes from a published version. Unknown items are
        skipped; the last `history` known ones count."""
        lr = self._lr
        m = lr.model
        length = lr.settings.history
        hist = np.full((len(recent), length), EMPTY, dtype=np.int64)
        ages = np.zeros(hist.shape, np.int64)
        known = np.zeros(len(recent), np.int64)
        for k, ids in enumerate(recent):
            rows = lr.items.lookup(ids) if ids and length else np.empty(0, np.int64)
            rows = rows[(rows >= 0) & lr.item_valid[np.maximum(rows, 0)]]
            known[k] = len(rows)
            rows = rows[max(0, len(rows) - length) :]
            hist[k, : len(rows)] = rows
            ages[k] = len(rows) - 1 - np.arange(length)
        cat_rows, nums = lr.context.encode(contexts or [{}] * len(recent))
        if lr.settings.activity_features:
            nums = np.concatenate([nums, for_recent(known)], 1)
        zeros = torch.zeros(len(recent), m.dim)
        pooled = self.pooled_history(hist, ages)
        return m.query(zeros, pooled, m.context_inputs(cat_rows, nums))

    @torch.no_grad()
    def query_vectors(self, user_rows: np.ndarray) -> torch.Tensor:
        """ψ of admitted user rows (no context): what the writer publishes per user."""
        ids = [self._lr.users.id_of(int(r)) or "" for r in user_rows]
        return self.query(user_rows, ids, [{}] * len(user_rows))

    @torch.no_grad()
    def scores(self, user_rows: np.ndarray) -> torch.Tensor:
        """Scores of every item row for admitted user rows: (B, n_rows), -inf off-catalogue."""
        return self.score_all(self.query_vectors(user_rows))

    @torch.no_grad()
    def scores_for(
        self, users: list[str], contexts: list[dict[str, Any]] | None = None
    ) -> torch.Tensor:
        """Scores of every item row for any user ids, as served (see `query_for`)."""
        return self.score_all(self.query_for(users, contexts))

    @torch.no_grad()
    def item_matrix(self) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(rows, Ṽ, offset) of every admitted item: offset = bias + popularity prior."""
        lr = self._lr
        rows = np.flatnonzero(lr.item_valid[: lr.items.rows_used])
        offset = lr.model.item_bias.weight[torch.from_numpy(rows), 0] + self.prior(rows)
        return rows, self.item_vectors(rows), offset
