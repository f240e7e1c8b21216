"""Budgeted progressive evaluation: score a sample of each batch before the model learns it.

Scoring a query against the whole catalogue costs far more than training on it, so only
`eval_sample` queries are scored, and only when the time saved up — a share `eval_budget` of
each step's time — covers what the last evaluation cost. Ranks go to `Progressive` (river's
running and rolling means, drift detection). Randomness is the evaluator's own: evaluating
never changes what training does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer.core.columns import EventColumns
from trainer.core.evaluation import Progressive, ranks_of
from trainer.core.state import Arrays, Meta

if TYPE_CHECKING:
    from trainer.core.learner import Learner


def _ema(old: float, new: float) -> float:
    return 0.9 * old + 0.1 * new if old else new


class Evaluator:
    def __init__(self, learner: Learner, clock: Callable[[], float], seed: int) -> None:
        self._lr = learner
        self._clock = clock
        self.progress = Progressive()
        self._rng = np.random.default_rng(seed)
        self._step_ms = 0.0  # moving average of a step, and the evaluation's time account
        self._cost_ms = 0.0
        self._credit_ms = 0.0

    def _count(self, b: int) -> int:
        """Queries to score this batch: `eval_sample` whenever the time saved up (a share
        `eval_budget` of each step) covers what the last evaluation cost, else 0. Scoring
        against a 1M-item catalogue has a fixed cost per call, so it is amortised over
        several batches rather than paid for a single query each batch."""
        s = self._lr.settings
        if s.eval_sample == 0:
            return 0
        self._credit_ms += s.eval_budget * self._step_ms
        if self._cost_ms and self._credit_ms < self._cost_ms:
            return 0
        return min(s.eval_sample, b)

    @torch.no_grad()
    def ranks_before_learning(
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
        lr = self._lr
        k = self._count(len(u))
        if k == 0 or not lr.item_valid.any():
            return None
        pick = self._rng.choice(len(u), size=k, replace=False)
        users, items = u[pick], i[pick]
        unseen_items = (items < lr.items.buckets) | np.isin(items, fresh_items)
        targets = np.where(unseen_items, -1, items)
        # a fresh row (admitted in this batch) was still a pending user when served
        cold = (users < lr.users.buckets) | np.isin(users, fresh_users)
        ids = [cols.users[k] for k in pick]
        contexts = [cols.context_list()[k] for k in pick]
        psi = lr.scoring.query(users, ids, contexts, cold)
        valid = lr.item_valid.copy()
        valid[fresh_items] = False
        return ranks_of(lr.scoring.score_all(psi, valid), torch.from_numpy(targets))

    def account(self, ranks: np.ndarray | None, loss: float, eval_ms: float, step_ms: float):
        """After a step: fold in its ranks and loss, and charge the evaluation's time."""
        self._step_ms = _ema(self._step_ms, step_ms)
        if ranks is not None:
            self.progress.update(ranks, loss)
            self._cost_ms = eval_ms
            self._credit_ms = max(0.0, self._credit_ms - self._cost_ms)

    def now_ms(self) -> float:
        return self._clock() * 1000

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        return self.progress.state()

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        self.progress.load_state(arrays, meta)
