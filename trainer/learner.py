"""The learner: one minibatch step of the softmax model on a batch of events.

Pure core: ids, numbers and tensors in; tensors and figures out. No kafka, redis or files.
Order inside a step: map ids to rows (growing the tables) → score a sample of the batch's
queries against the whole catalogue *before* learning them (progressive recall) → count the
batch's positives in the popularity distribution → draw negatives → sampled softmax with logQ
(+ gravity) → sparse updates → push the batch's items onto the users' histories (after the
step, so no event sees itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.config import ModelSettings
from trainer.evaluation import Progressive, ranks_of
from trainer.gravity import ItemGramian, gravity_penalty
from trainer.history import EMPTY, UserHistory
from trainer.loss import NegativeBlock, hit_pairs, positives_only_loss, sampled_softmax_loss
from trainer.model import TwoTower
from trainer.negatives import draw, draw_hard
from trainer.popularity import DecayedCounts, PopularitySampler
from trainer.vocab import Vocabulary


@dataclass
class EventColumns:
    """A batch as columns: what the learner needs of each event."""

    users: list[str]
    items: list[str]
    ts: np.ndarray  # int64 epoch ms
    weights: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_events(cls, events: Any) -> EventColumns:
        """From any sequence of objects with user, item, ts and weight attributes."""
        return cls(
            users=[e.user for e in events],
            items=[e.item for e in events],
            ts=np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events)),
            weights=np.fromiter((e.weight for e in events), dtype=np.float32, count=len(events)),
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
    total = (table[rows] * mask).sum(1)
    return total / mask.sum(1).clamp(min=1)


class Learner:
    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.users = Vocabulary()
        self.items = Vocabulary()
        self.model = TwoTower(settings)
        self.counts = DecayedCounts(settings.half_life_ms)
        self.sampler = PopularitySampler(
            self.counts, settings.alpha, settings.epsilon, seed=settings.seed + 1
        )
        self.history = UserHistory(settings.history)
        self.rng = np.random.default_rng(settings.seed + 2)
        self.torch_gen = torch.Generator().manual_seed(settings.seed + 3)
        self.gram = ItemGramian(settings.dim) if settings.gravity > 0 else None
        self.progress = Progressive()
        # evaluation draws its own randomness: it must never change what training does
        self._eval_rng = np.random.default_rng(settings.seed + 4)
        self._step_ms = 0.0  # moving averages that size the evaluation sample
        self._eval_query_ms = 0.0
        self.events_applied = 0
        self.last_ts = 0

    # ---- rows ------------------------------------------------------------------------------
    def _rows(self, cols: EventColumns) -> tuple[np.ndarray, np.ndarray]:
        u = self.users.add(cols.users)
        i = self.items.add(cols.items)
        self.model.users.ensure(len(self.users))
        self.model.items.ensure(len(self.items))
        self.model.item_bias.ensure(len(self.items))
        self.history.ensure(len(self.users))
        return u, i

    def prior(self, rows: np.ndarray, now_ms: float | None = None) -> torch.Tensor:
        """The popularity logit offset w·log(1 + decayed count) of item rows (0 when off)."""
        w = self.settings.popularity_prior
        if w == 0 or len(rows) == 0:
            return torch.zeros(len(rows))
        self.counts.ensure(int(rows.max()) + 1)
        counts = self.counts.at(rows, now_ms if now_ms is not None else self.last_ts)
        return torch.from_numpy(w * np.log1p(counts)).float()

    # ---- the step --------------------------------------------------------------------------
    def learn(self, cols: EventColumns) -> StepStats:
        if len(cols) == 0:
            return StepStats(0, 0.0, 0)
        s = self.settings
        known_users, known_items = len(self.users), len(self.items)
        u, i = self._rows(cols)
        t0 = time.perf_counter()
        ranks = self._evaluate(u, i, known_users, known_items)
        t1 = time.perf_counter()
        self.last_ts = max(self.last_ts, int(cols.ts.max()))
        rescale = self.counts.add(i, cols.ts)
        self.sampler.rescaled(rescale)
        self.sampler.update(i)
        neg = draw(
            s.negatives,
            i,
            self.sampler,
            self.counts,
            len(self.items),
            s.hard_pool,
            self.rng,
            s.logq,
        )
        t2 = time.perf_counter()
        hist = self.history.get(u)
        loss = self._step(u, i, hist, neg, cols.weights)
        self.history.push(u, i)
        self.events_applied += len(cols)
        t3 = time.perf_counter()
        self._step_ms = (
            0.9 * self._step_ms + 0.1 * (t3 - t1) * 1000 if self._step_ms else (t3 - t1) * 1000
        )
        if ranks is not None:
            self.progress.update(ranks, loss)
            if len(ranks):
                per_query = (t1 - t0) * 1000 / len(ranks)
                self._eval_query_ms = (
                    0.9 * self._eval_query_ms + 0.1 * per_query
                    if self._eval_query_ms
                    else per_query
                )
        timings = {"eval": (t1 - t0) * 1e3, "sample": (t2 - t1) * 1e3, "step": (t3 - t2) * 1e3}
        return StepStats(len(cols), loss, neg.total, 0 if ranks is None else len(ranks), timings)

    def _step(
        self, u: np.ndarray, i: np.ndarray, hist: np.ndarray, neg: Any, weights: np.ndarray
    ) -> float:
        m, s = self.model, self.settings
        b, n = len(i), len(neg.rows)
        valid = hist != EMPTY
        # one gather per table: every item row the step reads — positives, negatives, histories
        item_rows, inv = np.unique(np.concatenate([i, neg.rows, hist[valid]]), return_inverse=True)
        user_rows, u_inv = np.unique(u, return_inverse=True)
        item_t, user_t = torch.from_numpy(item_rows), torch.from_numpy(user_rows)
        V = m.items.gather(item_t)
        bias = m.item_bias.gather(item_t)
        U = m.users.gather(user_t)
        offset = bias[:, 0] + self.prior(item_rows)

        local_hist = np.full(hist.shape, EMPTY, dtype=np.int64)
        local_hist[valid] = inv[b + n :]
        psi = m.query(U[torch.from_numpy(u_inv)], history_mean(V, local_hist))
        pos_idx = torch.from_numpy(inv[:b])
        pos_s = (psi * V[pos_idx]).sum(1) + offset[pos_idx]
        w = torch.from_numpy(weights)
        if neg.positives_only:
            loss = positives_only_loss(pos_s, w)
        else:
            neg_idx = torch.from_numpy(inv[b : b + n])
            neg_s = psi @ V[neg_idx].T + offset[neg_idx]
            blocks = [
                NegativeBlock(neg_s, torch.from_numpy(neg.log_q).float(), hit_pairs(i, neg.rows))
            ]
            if neg.hard:
                pool_s = neg_s[:, neg.pool]
                pos, hard_log_q = draw_hard(
                    pool_s,
                    torch.from_numpy(neg.pool_log_q),
                    neg,
                    s.hard_temperature,
                    self.torch_gen,
                    s.logq,
                )
                hard_rows = neg.rows[neg.pool][pos.numpy()]
                q, c = np.nonzero(hard_rows == i[:, None])
                blocks.append(
                    NegativeBlock(
                        pool_s.gather(1, pos),
                        hard_log_q,
                        (torch.from_numpy(q), torch.from_numpy(c)),
                    )
                )
            loss = sampled_softmax_loss(pos_s, blocks, w)
        total = loss
        if self.gram is not None:
            if self.gram.rows == 0:
                self.gram.recompute(m.items.weight[: len(self.items)])
            total = loss + gravity_penalty(psi, self.gram.matrix(), len(self.items), V, s.gravity)
        m.dense_opt.zero_grad(set_to_none=True)
        # per-event gradient scale: a row sees O(1) gradients, the scale Adagrad is tuned for
        (total * b).backward()
        m.dense_opt.step()
        assert V.grad is not None and U.grad is not None and bias.grad is not None
        m.items.apply(item_t, V.grad)
        m.item_bias.apply(item_t, bias.grad)
        m.users.apply(user_t, U.grad)
        if self.gram is not None:
            self.gram.replace(V.detach(), m.items.weight[item_t], m.items.weight, len(self.items))
        return float(loss.detach())

    # ---- progressive evaluation ------------------------------------------------------------
    def _eval_count(self, b: int) -> int:
        s = self.settings
        if s.eval_sample == 0:
            return 0
        if not self._eval_query_ms:
            return min(s.eval_sample, b, 4)
        affordable = int(s.eval_budget * self._step_ms / self._eval_query_ms)
        return max(1, min(s.eval_sample, b, affordable))

    @torch.no_grad()
    def _evaluate(
        self, u: np.ndarray, i: np.ndarray, known_users: int, known_items: int
    ) -> np.ndarray | None:
        """Ranks of a sample of the batch's true items, scored by the model as it was before
        this batch; an item or user the model has not seen yet counts as it would be served."""
        k = self._eval_count(len(u))
        if k == 0 or known_items == 0:
            return None
        pick = self._eval_rng.choice(len(u), size=k, replace=False)
        users = u[pick]
        targets = np.where(i[pick] < known_items, i[pick], -1)
        psi = self._query(users, known_users)
        V, offset = self.item_matrix(known_items)
        return ranks_of(psi @ V.T + offset, torch.from_numpy(targets))

    # ---- inference -------------------------------------------------------------------------
    def _query(self, user_rows: np.ndarray, known_users: int | None = None) -> torch.Tensor:
        m = self.model
        known = len(self.users) if known_users is None else known_users
        user_vecs = m.users.weight[torch.from_numpy(user_rows)]
        unseen = torch.from_numpy(user_rows >= known)
        if unseen.any():  # a user the model never trained on has no embedding yet
            user_vecs = user_vecs.masked_fill(unseen.unsqueeze(1), 0.0)
        return m.query(user_vecs, history_mean(m.items.weight, self.history.get(user_rows)))

    @torch.no_grad()
    def query_vectors(self, user_rows: np.ndarray) -> torch.Tensor:
        """ψ for known user rows, from their embeddings and current histories."""
        return self._query(user_rows)

    @torch.no_grad()
    def item_matrix(self, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, offset) of the first `rows` item rows (default all): offset = bias + prior."""
        n = len(self.items) if rows is None else rows
        offset = self.model.item_bias.weight[:n, 0] + self.prior(np.arange(n))
        return self.model.items.weight[:n], offset

    @torch.no_grad()
    def scores(self, user_rows: np.ndarray) -> torch.Tensor:
        """Scores of every known item for each user row: (B, n_items)."""
        V, offset = self.item_matrix()
        return self.query_vectors(user_rows) @ V.T + offset

    def figures(self) -> dict[str, Any]:
        """Progressive quality so far, for logs, status and metrics."""
        return self.progress.figures()

    # ---- state -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from trainer.learner_state import export_state

        return export_state(self)

    @classmethod
    def from_state(
        cls, settings: ModelSettings, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> Learner:
        from trainer.learner_state import import_state

        return import_state(cls(settings), tensors, meta)
