"""The learner: one minibatch step of the softmax model on a batch of events.

Pure core: ids, numbers and tensors in; tensors and figures out. No kafka, redis or files.
Order inside a step: map ids to rows (admitting, evicting, resetting reused rows) → score a
sample of the batch's queries against the whole catalogue *before* learning them (progressive
recall, as the model would have served them) → count the batch's positives in the popularity
distribution → draw negatives → sampled softmax with logQ (+ gravity) → sparse updates → push
the batch's items onto the users' histories (after the step, so no event sees itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.core.evaluation import Progressive, ranks_of
from trainer.core.features import ContextEncoder, ItemFeatures
from trainer.core.gravity import ItemGramian, gravity_penalty
from trainer.core.history import EMPTY, UserHistory
from trainer.core.loss import (
    EXCLUDED,
    NegativeBlock,
    corrected_logits,
    hit_pairs,
    positives_only_loss,
    sampled_softmax_loss,
    shared_logits,
)
from trainer.core.model import TwoTower
from trainer.core.negatives import Negatives, draw, draw_hard
from trainer.core.popularity import DecayedCounts, PopularitySampler
from trainer.core.settings import ModelSettings
from trainer.core.table import SparseGrads
from trainer.core.vocab import Vocabulary

EVICT_EVERY = 64  # batches between staleness sweeps of the vocabularies


@dataclass
class EventColumns:
    """A batch as columns: what the learner needs of each event."""

    users: list[str]
    items: list[str]
    ts: np.ndarray  # int64 epoch ms
    weights: np.ndarray  # float32
    contexts: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.users)

    def context_list(self) -> list[dict[str, Any]]:
        return self.contexts if self.contexts is not None else [{}] * len(self.users)

    @classmethod
    def from_events(cls, events: Any) -> EventColumns:
        """From any sequence of objects with user, item, ts, weight and context attributes."""
        return cls(
            users=[e.user for e in events],
            items=[e.item for e in events],
            ts=np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events)),
            weights=np.fromiter((e.weight for e in events), dtype=np.float32, count=len(events)),
            contexts=[e.context for e in events],
        )


@dataclass(frozen=True)
class StepStats:
    events: int
    loss: float
    negatives: int  # per query, all strategies
    evaluated: int = 0  # queries scored before learning
    timings_ms: dict[str, float] = field(default_factory=dict)  # eval, sample, step


def history_mean(table: torch.Tensor, hist: np.ndarray) -> torch.Tensor:
    """Mean of `table` rows named by `hist` (B, L), EMPTY entries skipped; zeros if none."""
    valid = hist != EMPTY
    rows = torch.from_numpy(np.where(valid, hist, 0))
    mask = torch.from_numpy(valid).unsqueeze(-1).to(table.dtype)
    return (table[rows] * mask).sum(1) / mask.sum(1).clamp(min=1)


def _ema(old: float, new: float) -> float:
    return 0.9 * old + 0.1 * new if old else new


class Learner:
    def __init__(self, settings: ModelSettings) -> None:
        s = self.settings = settings
        self.users = Vocabulary(s.min_count, s.buckets, s.max_users, s.evict_after_ms)
        self.items = Vocabulary(s.min_count, s.buckets, s.max_items, s.evict_after_ms)
        self.model = TwoTower(s)
        self.context = ContextEncoder(s.context_fields, s.feature_buckets)
        self.item_features = ItemFeatures(s.item_features, s.feature_buckets)
        self.counts = DecayedCounts(s.half_life_ms)
        self.sampler = PopularitySampler(self.counts, s.alpha, s.epsilon, seed=s.seed + 1)
        self.history = UserHistory(s.history)
        self.rng = np.random.default_rng(s.seed + 2)
        self.torch_gen = torch.Generator().manual_seed(s.seed + 3)
        self.gram = ItemGramian(s.dim) if s.gravity > 0 else None
        self.progress = Progressive()
        # evaluation draws its own randomness: it must never change what training does
        self._eval_rng = np.random.default_rng(s.seed + 4)
        self._step_ms = 0.0  # moving average of a step, and the evaluation's time account
        self._eval_cost_ms = 0.0
        self._eval_credit_ms = 0.0
        self.item_valid = np.zeros(1024, dtype=bool)  # rows that are admitted items
        self.user_active = np.zeros(1024, dtype=np.int64)  # events_applied at last activity
        self.events_applied = 0
        self.batches = 0
        self.last_ts = 0

    # ---- rows ------------------------------------------------------------------------------
    def _rows(self, cols: EventColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows of the batch's users and items, after admissions and evictions; returns also
        the user and item rows admitted in this batch (new to the model)."""
        if self.batches % EVICT_EVERY == 0:
            now = max(self.last_ts, int(cols.ts.max()))
            self.users.evict(now)
            self.items.evict(now)
        u = self.users.add(cols.users, cols.ts)
        i = self.items.add(cols.items, cols.ts)
        m = self.model
        nu, ni = self.users.rows_used, self.items.rows_used
        m.users.ensure(nu)
        m.items.ensure(ni)
        m.item_bias.ensure(ni)
        self.history.ensure(nu)
        self.counts.ensure(ni)
        self.sampler.tree.ensure(ni)
        self.item_features.ensure(ni)
        if len(self.item_valid) < ni:
            self.item_valid = np.concatenate([self.item_valid, np.zeros(ni, bool)])
        if len(self.user_active) < nu:
            self.user_active = np.concatenate([self.user_active, np.zeros(nu, np.int64)])

        freed_users, freed_items = self.users.take_freed(), self.items.take_freed()
        self.history.reset(freed_users)
        self.history.forget_items(freed_items)
        self.item_valid[freed_items] = False
        fresh_users, fresh_items = self.users.take_fresh(), self.items.take_fresh()
        m.users.reset(torch.from_numpy(fresh_users))
        self.history.adopt(fresh_users, [self.users.id_of(r) or "" for r in fresh_users])
        gone = np.concatenate([freed_items, fresh_items])
        m.items.reset(torch.from_numpy(fresh_items))
        m.item_bias.reset(torch.from_numpy(fresh_items))
        self.counts.clear(gone)
        self.sampler.update(gone)
        self.item_features.reset(gone)
        self.item_valid[fresh_items] = True
        return u, i, fresh_users, fresh_items

    def prior(self, rows: np.ndarray, now_ms: float | None = None) -> torch.Tensor:
        """The popularity logit offset w·log(1 + decayed count) of item rows (0 when off)."""
        w = self.settings.popularity_prior
        if w == 0 or len(rows) == 0 or (self.counts.ref_ms is None and self.counts.half_life_ms):
            return torch.zeros(len(rows))
        now = now_ms if now_ms is not None else max(self.last_ts, self.counts.ref_ms or 0)
        counts = self.counts.at(rows, now)
        return torch.from_numpy(w * np.log1p(counts)).float()

    # ---- the step --------------------------------------------------------------------------
    def learn(self, cols: EventColumns) -> StepStats:
        if len(cols) == 0:
            return StepStats(0, 0.0, 0)
        s = self.settings
        contexts = cols.context_list()
        u, i, fresh_users, fresh_items = self._rows(cols)
        t0 = time.perf_counter()
        ranks = self._evaluate(u, i, cols, fresh_users, fresh_items)
        t1 = time.perf_counter()
        self.last_ts = max(self.last_ts, int(cols.ts.max()))
        own = i >= self.items.buckets  # positives with a row of their own
        self.sampler.rescaled(self.counts.add(i[own], cols.ts[own]))
        self.sampler.update(i[own])
        neg = draw(
            s.negatives,
            i,
            self.sampler,
            self.counts,
            self.items.rows_used,
            s.hard_pool,
            self.rng,
            s.logq,
        )
        neg.log_q[~self.item_valid[neg.rows]] = EXCLUDED  # buckets and free rows are not items
        t2 = time.perf_counter()
        hist = self.history.get(u, cols.users, self.users.buckets)
        cat_rows, nums = self.context.encode(contexts, learn=True)
        loss = self._step(u, i, hist, cat_rows, nums, neg, cols.weights)
        self.history.push(
            u[own], i[own], [cols.users[k] for k in np.flatnonzero(own)], self.users.buckets
        )
        self.item_features.observe(i[own], [contexts[k] for k in np.flatnonzero(own)])
        self.events_applied += len(cols)
        self.user_active[u[u >= self.users.buckets]] = self.events_applied
        self.batches += 1
        t3 = time.perf_counter()
        self._step_ms = _ema(self._step_ms, (t3 - t1) * 1000)
        if ranks is not None:
            self.progress.update(ranks, loss)
            self._eval_cost_ms = (t1 - t0) * 1000
            self._eval_credit_ms = max(0.0, self._eval_credit_ms - self._eval_cost_ms)
        timings = {"eval": (t1 - t0) * 1e3, "sample": (t2 - t1) * 1e3, "step": (t3 - t2) * 1e3}
        return StepStats(len(cols), loss, neg.total, 0 if ranks is None else len(ranks), timings)

    def _step(
        self,
        u: np.ndarray,
        i: np.ndarray,
        hist: np.ndarray,
        cat_rows: np.ndarray,
        nums: np.ndarray,
        neg: Negatives,
        weights: np.ndarray,
    ) -> float:
        m, s = self.model, self.settings
        b, n = len(i), len(neg.rows)
        grads = SparseGrads()
        valid = hist != EMPTY
        # one gather per table: every item row the step reads — positives, negatives, histories
        item_rows, inv = np.unique(np.concatenate([i, neg.rows, hist[valid]]), return_inverse=True)
        V = grads.gather_unique(m.items, item_rows)
        bias = grads.gather_unique(m.item_bias, item_rows)
        feature_term = m.feature_term(self.item_features.rows[item_rows], grads)
        Vf = V if feature_term is None else V + feature_term
        offset = bias[:, 0] + self.prior(item_rows)
        U, u_inv = grads.gather(m.users, u)

        local_hist = np.full(hist.shape, EMPTY, dtype=np.int64)
        local_hist[valid] = inv[b + n :]
        context = m.context_inputs(cat_rows, nums, grads)
        psi = m.query(U[u_inv], history_mean(Vf, local_hist), context)
        pos_idx = torch.from_numpy(inv[:b])
        pos_s = (psi * Vf[pos_idx]).sum(1) + offset[pos_idx]
        w = torch.from_numpy(weights)
        if neg.positives_only:
            loss = positives_only_loss(pos_s, w)
        else:
            loss = sampled_softmax_loss(
                pos_s, self._negative_blocks(psi, Vf, offset, inv[b : b + n], i, neg), w
            )
        total = loss
        if self.gram is not None:
            if self.gram.rows == 0:
                self.gram.recompute(m.items.weight[: self.items.rows_used])
            total = loss + gravity_penalty(psi, self.gram.matrix(), len(self.items), V, s.gravity)
        m.dense_opt.zero_grad(set_to_none=True)
        # per-event gradient scale: a row sees O(1) gradients, the scale Adagrad is tuned for
        (total * b).backward()
        m.dense_opt.step()
        old_v = V.detach().clone() if self.gram is not None else None
        grads.apply()
        if self.gram is not None and old_v is not None:
            rows_t = torch.from_numpy(item_rows)
            self.gram.replace(old_v, m.items.weight[rows_t], m.items.weight, self.items.rows_used)
        return float(loss.detach())

    def _negative_blocks(
        self,
        psi: torch.Tensor,
        Vf: torch.Tensor,
        offset: torch.Tensor,
        neg_local: np.ndarray,
        i: np.ndarray,
        neg: Negatives,
    ) -> list[NegativeBlock]:
        s = self.settings
        neg_idx = torch.from_numpy(neg_local)
        log_q = torch.from_numpy(neg.log_q).float()
        logits = shared_logits(psi, Vf[neg_idx], offset[neg_idx], log_q)
        blocks = [NegativeBlock(logits, hit_pairs(i, neg.rows))]
        if neg.hard:
            # the pool's raw scores ψ·V + offset: the corrected logits with log Q added back,
            # unless the pool columns are excluded from the loss (their log Q is huge)
            if neg.pool_only:
                pool_idx = neg_idx[neg.pool]
                pool_s = psi @ Vf[pool_idx].T + offset[pool_idx]
            else:
                pool_s = logits[:, neg.pool] + log_q[neg.pool]
            # rows that are not items (buckets, free rows) must not be drawn as hard negatives
            invalid = ~torch.from_numpy(self.item_valid[neg.rows[neg.pool]])
            drawable = pool_s.masked_fill(invalid.unsqueeze(0), -EXCLUDED)
            pos, hard_log_q = draw_hard(
                drawable,
                torch.from_numpy(neg.pool_log_q),
                neg,
                s.hard_temperature,
                self.torch_gen,
                s.logq,
            )
            rows = neg.rows[neg.pool][pos.numpy()]
            q, c = np.nonzero((rows == i[:, None]) | ~self.item_valid[rows])
            hits = (torch.from_numpy(q), torch.from_numpy(c))
            blocks.append(NegativeBlock(corrected_logits(pool_s.gather(1, pos), hard_log_q), hits))
        return blocks

    # ---- progressive evaluation ------------------------------------------------------------
    def _eval_count(self, b: int) -> int:
        """Queries to score this batch: `eval_sample` whenever the time saved up (a share
        `eval_budget` of each step) covers what the last evaluation cost, else 0. Scoring
        against a 1M-item catalogue has a fixed cost per call, so it is amortised over
        several batches rather than paid for a single query each batch."""
        s = self.settings
        if s.eval_sample == 0:
            return 0
        self._eval_credit_ms += s.eval_budget * self._step_ms
        if self._eval_cost_ms and self._eval_credit_ms < self._eval_cost_ms:
            return 0
        return min(s.eval_sample, b)

    @torch.no_grad()
    def _evaluate(
        self,
        u: np.ndarray,
        i: np.ndarray,
        cols: EventColumns,
        fresh_users: np.ndarray,
        fresh_items: np.ndarray,
    ) -> np.ndarray | None:
        """Ranks of a sample of the batch's true items, scored as the model would have served
        them before this batch: users new to it have no embedding (history and context only),
        items new to it or not admitted cannot be recommended (a miss)."""
        k = self._eval_count(len(u))
        if k == 0 or not self.item_valid.any():
            return None
        pick = self._eval_rng.choice(len(u), size=k, replace=False)
        users, items = u[pick], i[pick]
        unseen_items = (items < self.items.buckets) | np.isin(items, fresh_items)
        targets = np.where(unseen_items, -1, items)
        # a fresh row (admitted in this batch) was still a pending user when served
        cold = (users < self.users.buckets) | np.isin(users, fresh_users)
        ids = [cols.users[k] for k in pick]
        contexts = [cols.context_list()[k] for k in pick]
        psi = self._query(users, ids, contexts, cold)
        valid = self.item_valid.copy()
        valid[fresh_items] = False
        return ranks_of(self.score_all(psi, valid), torch.from_numpy(targets))

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def item_vectors(self, rows: np.ndarray) -> torch.Tensor:
        """Ṽ of item rows: own vector + item-feature term."""
        V = self.model.items.weight[torch.from_numpy(rows)]
        term = self.model.feature_term(self.item_features.rows[rows])
        return V if term is None else V + term

    @torch.no_grad()
    def score_all(self, psi: torch.Tensor, valid: np.ndarray | None = None) -> torch.Tensor:
        """Scores of every row for queries ψ (B, n_rows); rows that are not items get -inf."""
        m = self.model
        n = self.items.rows_used
        scores = psi @ m.items.weight[:n].T + m.item_bias.weight[:n, 0] + self.prior(np.arange(n))
        feats = self.item_features.rows[:n]
        for f, table in enumerate(m.item_feats):  # ψ·F_f gathered per item: no (n, d) copy
            have = feats[:, f] >= 0
            scores[:, torch.from_numpy(have)] += (psi @ table.weight.T)[
                :, torch.from_numpy(feats[have, f])
            ]
        mask = self.item_valid[:n] if valid is None else valid[:n]
        return scores.masked_fill_(~torch.from_numpy(mask).unsqueeze(0), float("-inf"))

    def _query(
        self,
        user_rows: np.ndarray,
        ids: list[str],
        contexts: list[dict[str, Any]],
        cold: np.ndarray | None = None,
    ) -> torch.Tensor:
        m = self.model
        user_vecs = m.users.weight[torch.from_numpy(user_rows)]
        if cold is None:
            cold = user_rows < self.users.buckets
        if cold.any():  # a user without a row of its own is served without an embedding
            user_vecs = user_vecs.masked_fill(torch.from_numpy(cold).unsqueeze(1), 0.0)
        hist = self.history.get(user_rows, ids, self.users.buckets)
        valid = hist != EMPTY
        Vf = self.item_vectors(hist[valid]) if valid.any() else torch.zeros(1, m.dim)
        local = np.full(hist.shape, EMPTY, dtype=np.int64)
        local[valid] = np.arange(int(valid.sum()))
        cat_rows, nums = self.context.encode(contexts)
        return m.query(user_vecs, history_mean(Vf, local), m.context_inputs(cat_rows, nums))

    @torch.no_grad()
    def query_for(
        self, users: list[str], contexts: list[dict[str, Any]] | None = None
    ) -> torch.Tensor:
        """ψ for any user ids (known, pending or never seen), with optional contexts."""
        rows = self.users.lookup(users, pending_to_bucket=True)
        unknown = rows < 0
        rows = np.where(unknown, 0, rows)
        cold = unknown | (rows < self.users.buckets)
        return self._query(rows, users, contexts or [{}] * len(users), cold)

    @torch.no_grad()
    def query_vectors(self, user_rows: np.ndarray) -> torch.Tensor:
        """ψ of admitted user rows (no context): what the writer publishes per user."""
        ids = [self.users.id_of(int(r)) or "" for r in user_rows]
        return self._query(user_rows, ids, [{}] * len(user_rows))

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
        rows = np.flatnonzero(self.item_valid[: self.items.rows_used])
        offset = self.model.item_bias.weight[torch.from_numpy(rows), 0] + self.prior(rows)
        return rows, self.item_vectors(rows), offset

    def figures(self) -> dict[str, Any]:
        """Progressive quality so far and vocabulary counters, for logs, status and metrics."""
        return {
            **self.progress.figures(),
            "users": len(self.users),
            "items": len(self.items),
            "users_admitted": self.users.admitted,
            "users_evicted": self.users.evicted,
            "items_admitted": self.items.admitted,
            "items_evicted": self.items.evicted,
        }

    # ---- state -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from trainer.core.learner_state import export_state

        return export_state(self)

    @classmethod
    def from_state(
        cls, settings: ModelSettings, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> Learner:
        from trainer.core.learner_state import import_state

        return import_state(cls(settings), tensors, meta)
