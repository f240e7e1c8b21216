"""Negative-sampling strategies, their CLI spelling, and the probability each negative had.

`--negatives popularity:1024,in-batch,hard:64` draws 1024 items by popularity, adds the batch's
positives, and for each query picks 64 hard negatives. Strategies:

- `popularity:N` — N items from q(j) ∝ count_j^α mixed with ε uniform (popularity.py);
- `uniform:N` — N items uniformly;
- `in-batch` — the other positives of the batch, free but drawn ∝ each item's share of
  positives (not count^α): that share, estimated over the recent stream (frequency.py), is q;
- `hard:N` — per query, N items drawn with probability rising with the score ψ(x)·V_j: a pool of
  `hard_pool` items drawn by popularity (the first of the `popularity` draws when present),
  scored against the batch's queries, and each query samples from softmax(score/τ) over it;
- `full` — every item (small catalogues and tests: the exact softmax);
- `none` — positives only (the loss becomes logistic; the model folds — for demonstrations).

Each negative carries log Q = log(N·q) with N the total number of negatives of its query and q
the probability *of the strategy that drew it* (loss.py says why that mixes unbiasedly). For a
hard negative q = M·q_pool(j)·r_x(m): the pool draw (M candidates ∝ q_pool) followed by the
query's draw r_x over pool positions; importance weights 1/(N·M·q_pool·r) keep Σ exp(s)/…
an unbiased estimate of the partition function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from trainer.core.loss import EXCLUDED
from trainer.core.popularity import PopularitySampler
from trainer.core.strategies import (
    DEFAULT_NEGATIVES,
    STRATEGIES,
    NegativeSpec,
    parse_negatives,
)

__all__ = [
    "DEFAULT_NEGATIVES",
    "STRATEGIES",
    "NegativeSpec",
    "Negatives",
    "draw",
    "draw_hard",
    "parse_negatives",
]


class Shares(Protocol):
    def share(self, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class Negatives:
    """A batch's negatives. Shared columns serve every query; hard ones are drawn per query.

    `log_q` is log(N·q) per shared column, EXCLUDED for pool-only columns (scored for hard
    sampling, not negatives themselves): their corrected logit is effectively -inf.
    """

    rows: np.ndarray  # (S,) shared columns
    log_q: np.ndarray  # (S,)
    total: int  # N: negatives per query, all strategies
    pool: slice  # the shared columns that form the hard pool (may be empty)
    pool_log_q: np.ndarray  # (M,) log q_pool of the pool's draws
    hard: int  # hard negatives per query
    pool_only: bool = False  # the pool columns are drawn for hard sampling only
    # the shared columns that are the batch's positives, in the batch's order
    in_batch: slice = field(default_factory=lambda: slice(0, 0))

    @property
    def positives_only(self) -> bool:
        return self.total == 0


def draw(
    specs: tuple[NegativeSpec, ...],
    positives: np.ndarray,
    sampler: PopularitySampler,
    in_batch_q: Shares,
    n_items: int,
    hard_pool: int,
    rng: np.random.Generator,
    logq: bool = True,
) -> Negatives:
    """Draw the shared negatives. `in_batch_q.share(rows)` is the q of an in-batch negative,
    its item's share of recent positives (frequency.py; it must have counted this batch).

    With `logq=False` every correction is 0 (plain sampled softmax, for comparison).
    """
    by_name = {s.name: s for s in specs}
    hard = by_name["hard"].count if "hard" in by_name else 0
    blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, q)
    pool_only = False
    if "popularity" in by_name or hard:
        size = by_name["popularity"].count if "popularity" in by_name else hard_pool
        blocks.append(sampler.sample(size))
        pool_only = "popularity" not in by_name
    if "uniform" in by_name:
        k = by_name["uniform"].count
        blocks.append((rng.integers(0, n_items, size=k), np.full(k, 1.0 / n_items)))
    if "full" in by_name:
        blocks.append((np.arange(n_items), np.full(n_items, 1.0 / n_items)))
    if "in-batch" in by_name:
        # each occurrence is one draw: an item twice in the batch is two negatives
        blocks.append((positives, in_batch_q.share(positives)))
    batch_start = sum(len(b[0]) for b in blocks[:-1]) if "in-batch" in by_name else 0
    in_batch = slice(batch_start, batch_start + len(positives) if "in-batch" in by_name else 0)
    rows = np.concatenate([b[0] for b in blocks]) if blocks else np.empty(0, np.int64)
    q = np.concatenate([b[1] for b in blocks]) if blocks else np.empty(0)
    first = len(blocks[0][0]) if blocks and ("popularity" in by_name or hard) else 0
    # the hard pool: the first `hard_pool` popularity draws (a smaller pool is a cheaper
    # per-query draw, and still a popularity sample), or the whole pool-only block
    pool_size = (first if pool_only else min(hard_pool, first)) if hard else 0
    total = len(rows) - (first if pool_only else 0) + hard
    log_q = np.log(total * np.maximum(q, 1e-30)) if logq else np.zeros(len(q))
    if pool_only:
        log_q[:first] = EXCLUDED
    pool_log_q = np.log(np.maximum(q[:pool_size], 1e-30))
    pool = slice(0, pool_size)
    return Negatives(rows, log_q, total, pool, pool_log_q, hard, pool_only, in_batch)


def draw_hard(
    pool_scores: torch.Tensor,
    pool_log_q: torch.Tensor,
    negatives: Negatives,
    temperature: float,
    generator: torch.Generator,
    logq: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, `negatives.hard` pool positions ∝ softmax(score/τ), and their log(N·Q).

    pool_scores (B, M) are the queries' scores of the pool (no gradient needed here).
    Returns positions (B, n) into the pool and log_q (B, n).
    """
    logits = pool_scores.detach() / temperature
    log_r = torch.log_softmax(logits, dim=1)
    pos = torch.multinomial(log_r.exp(), negatives.hard, replacement=True, generator=generator)
    if not logq:
        return pos, torch.zeros(pos.shape)
    m = pool_scores.shape[1]
    log_q = math.log(negatives.total * m) + pool_log_q.to(log_r.dtype)[pos] + log_r.gather(1, pos)
    return pos, log_q
