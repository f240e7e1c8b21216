"""One pass over a stream for several models: test-then-train, a holdout cut, cold-start buckets.

For every batch, a fixed sample of its events (the same for every model) is scored *before* any
model learns the batch: each model returns scores over the whole catalogue seen so far, and
`trainer.core.evaluation.ranks_of` turns them into ranks — one metric code for every model. An item
never seen before is a miss for everyone. At 80% of the stream every model has learned exactly
the first 80%: the holdout (a sample of the last 20%'s events of users seen before the cut) is
scored then, with no learning in between; MF baselines refit first (`fit`), as a batch job would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.models import Batch, Model
from bench.streams import Stream
from trainer.core.evaluation import ranks_of

KS = (10, 100)


@dataclass(frozen=True)
class EvalPlan:
    batch_size: int = 1024
    eval_per_batch: int = 128
    holdout_at: float = 0.8  # share of the stream before the holdout cut; 0 = no holdout
    holdout_sample: int = 4000
    seed: int = 0


@dataclass
class Outcome:
    """Ranks of the evaluated events of one model, and where its time went."""

    name: str
    events: np.ndarray  # stream positions of the progressively evaluated events
    ranks: np.ndarray
    holdout_ranks: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    learn_s: float = 0.0
    score_s: float = 0.0

    def recall(self, k: int, where: np.ndarray | None = None) -> float:
        r = self.ranks if where is None else self.ranks[where]
        return float(np.mean(r < k)) if len(r) else float("nan")

    def holdout_recall(self, k: int) -> float:
        r = self.holdout_ranks
        return float(np.mean(r < k)) if len(r) else float("nan")


def batch_of(stream: Stream, lo: int, hi: int) -> Batch:
    ctx = None if stream.context is None else stream.context[lo:hi]
    return Batch(stream.users[lo:hi], stream.items[lo:hi], stream.ts[lo:hi], ctx)


def rank_all(model: Model, queries: Batch, targets: np.ndarray, n_items: int) -> np.ndarray:
    """Ranks of `targets` (-1 = unseen item, a miss) under `model`, in chunks of 512 queries."""
    out = []
    for lo in range(0, len(queries), 512):
        q = queries.take(np.arange(lo, min(lo + 512, len(queries))))
        scores = model.scores(q, n_items)
        out.append(ranks_of(scores, torch.from_numpy(targets[lo : lo + 512])))
    return np.concatenate(out) if out else np.empty(0, np.int64)


def run(
    stream: Stream,
    models: Sequence[Model],
    plan: EvalPlan,
    tick: Callable[[int], None] | None = None,
) -> dict[str, Outcome]:
    """Test-then-train every model over `stream`; `tick(events)` reports progress."""
    rng = np.random.default_rng([plan.seed, 21])
    n, B = len(stream), plan.batch_size
    cut = round(plan.holdout_at * n / B) * B if plan.holdout_at > 0 else -1
    results = {
        m.name: Outcome(m.name, np.empty(0, np.int64), np.empty(0, np.int64)) for m in models
    }
    positions: list[np.ndarray] = []
    ranks: dict[str, list[np.ndarray]] = {m.name: [] for m in models}
    seen_items = 0
    for lo in range(0, n, B):
        hi = min(lo + B, n)
        batch = batch_of(stream, lo, hi)
        if lo == cut:
            _holdout(stream, models, results, cut, seen_items, plan, rng)
        if seen_items > 0:
            rows = np.sort(rng.choice(hi - lo, min(plan.eval_per_batch, hi - lo), replace=False))
            queries = batch.take(rows)
            targets = np.where(queries.items < seen_items, queries.items, -1)
            positions.append(lo + rows)
            for m in models:
                t = time.perf_counter()
                ranks[m.name].append(rank_all(m, queries, targets, seen_items))
                results[m.name].score_s += time.perf_counter() - t
        for m in models:
            t = time.perf_counter()
            m.learn(batch)
            results[m.name].learn_s += time.perf_counter() - t
        seen_items = max(seen_items, int(batch.items.max()) + 1)
        if tick is not None:
            tick(hi - lo)
    events = np.concatenate(positions) if positions else np.empty(0, np.int64)
    for m in models:
        results[m.name].events = events
        results[m.name].ranks = np.concatenate(ranks[m.name]) if ranks[m.name] else events
    return results


def _holdout(
    stream: Stream,
    models: Sequence[Model],
    results: dict[str, Outcome],
    cut: int,
    seen_items: int,
    plan: EvalPlan,
    rng: np.random.Generator,
) -> None:
    warm_users = int(stream.users[:cut].max()) + 1
    later = np.flatnonzero(stream.users[cut:] < warm_users) + cut
    pick = np.sort(rng.choice(later, min(plan.holdout_sample, len(later)), replace=False))
    queries = Batch(stream.users[pick], stream.items[pick], stream.ts[pick])
    if stream.context is not None:
        queries = Batch(queries.users, queries.items, queries.ts, stream.context[pick])
    targets = np.where(queries.items < seen_items, queries.items, -1)
    for m in models:
        refit = getattr(m, "fit", None)
        if callable(refit):
            refit()
        t = time.perf_counter()
        results[m.name].holdout_ranks = rank_all(m, queries, targets, seen_items)
        results[m.name].score_s += time.perf_counter() - t
