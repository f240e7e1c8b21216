"""A held-out evaluation like the judge's on real ratings data: learn the first 80%, then rank.

Every model learns the first 80% of the stream's events (time order, batches of 1024, as the
trainer would; MF refits on them at the end, as a batch job would), and is then frozen. Scores
cover every item seen before the cut; a target the model cannot score (an item born later)
is a miss. Ties count against the target, as in `trainer.core.evaluation.ranks_of`.

- warm users: ≥ 1 event before the cut and ≥ 1 after (a sample, the same for every model).
  Targets: the user's distinct items after the cut. Per user, recall@k = hits / targets
  (also hits / min(k, targets)) and NDCG@10 (binary gain); then the mean over users. Twice:
  with the items the user had before the cut left out of the ranking (the headline; with
  no repeats in ratings data they can never be a target), and kept in.
- cold users: first event after the cut, ≥ 4 events. The first 3 items are known; the rest
  are the targets; the model scores from those 3 items alone (`scores_from_items`: the
  softmax's ψ from recent items as `store.Reader.recommend_for` serves it, item-kNN's sum
  of similarities, MF's fold-in); the 3 items are left out of the ranking.
- new items: warm users' later events whose item had 1–5 events before the cut: the share
  whose item is in the user's top 10 (past items left out).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from bench.harness import batch_of
from bench.models import Batch, Model
from bench.streams import Stream

WARM = ("warm recall@10", "warm recall@50", "warm NDCG@10")
KEPT = ("warm recall@10, past kept", "warm recall@50, past kept", "warm NDCG@10, past kept")
CAPPED = ("warm hits@10 / min(10, n)", "warm hits@50 / min(50, n)")
COLD, NEW, SPEED = "cold-3 recall@10", "new-item recall@10", "train events/s"
METRICS = (*WARM, COLD, NEW, SPEED, *KEPT, *CAPPED)
CHUNK = 256


@dataclass(frozen=True)
class JudgePlan:
    holdout_at: float = 0.8
    batch_size: int = 1024
    warm_users: int = 3000  # at most, sampled
    cold_users: int = 3000
    cold_known: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Split:
    cut: int  # events before it are learned
    n_items: int  # items seen before the cut: the catalogue every model ranks
    warm: np.ndarray  # sampled warm users
    past: list[np.ndarray]  # each warm user's items before the cut
    future: list[np.ndarray]  # ... and after it
    known: list[np.ndarray]  # each sampled cold user's first items
    cold_future: list[np.ndarray]  # ... and the rest
    item_events: np.ndarray  # events per item before the cut


def split(stream: Stream, plan: JudgePlan) -> Split:
    n = len(stream)
    cut = max(plan.batch_size, round(plan.holdout_at * n / plan.batch_size) * plan.batch_size)
    cut = min(cut, n)
    rng = np.random.default_rng([plan.seed, 22])
    users, items = stream.users, stream.items
    n_items = int(items[:cut].max()) + 1
    by_user = np.argsort(users, kind="stable")  # each user's events, in time order
    bounds = np.r_[0, np.flatnonzero(np.diff(users[by_user])) + 1, n]
    events = {int(users[by_user[a]]): by_user[a:b] for a, b in pairwise(bounds)}
    n_warm = int(users[:cut].max()) + 1  # users are numbered in order of first appearance
    warm = np.unique(users[cut:][users[cut:] < n_warm])
    warm = np.sort(rng.choice(warm, min(plan.warm_users, len(warm)), replace=False))
    past = [items[e[e < cut]] for e in (events[u] for u in warm.tolist())]
    future = [np.unique(items[e[e >= cut]]) for e in (events[u] for u in warm.tolist())]
    cold = [u for u in range(n_warm, stream.n_users) if len(events[u]) > plan.cold_known]
    pick = np.sort(rng.choice(len(cold), min(plan.cold_users, len(cold)), replace=False))
    mine = [items[events[cold[k]]] for k in pick.tolist()]
    known = [m[: plan.cold_known] for m in mine]
    rest = [np.setdiff1d(m[plan.cold_known :], k) for m, k in zip(mine, known, strict=True)]
    counts = np.bincount(items[:cut], minlength=n_items)
    return Split(cut, n_items, warm, past, future, known, rest, counts)


def learn(
    stream: Stream,
    models: Sequence[Model],
    cut: int,
    batch_size: int,
    tick: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Every model learns events [0, cut) batch by batch (each its own pass); seconds each."""
    took = {}
    for m in models:
        t = time.perf_counter()
        for lo in range(0, cut, batch_size):
            m.learn(batch_of(stream, lo, min(lo + batch_size, cut)))
            if tick is not None:
                tick(min(lo + batch_size, cut) - lo)
        refit = getattr(m, "fit", None)
        if callable(refit):
            refit()
        took[m.name] = time.perf_counter() - t
    return took


def evaluate(model: Model, sp: Split) -> dict[str, float | str]:
    """The metrics of one frozen model: a value, or the reason it has none."""
    out: dict[str, float | str] = {}
    kept, dropped, new_hits = [], [], []
    for lo in range(0, len(sp.warm), CHUNK):
        users = sp.warm[lo : lo + CHUNK]
        q = Batch(users, np.zeros_like(users), np.zeros_like(users))
        s = model.scores(q, sp.n_items).float().clone()
        fut = sp.future[lo : lo + CHUNK]
        kept.append(_per_user(s, fut))
        _leave_out(s, sp.past[lo : lo + CHUNK])
        d = _per_user(s, fut)
        dropped.append(d)
        counts = _count_of(sp.item_events, fut)
        new = (counts >= 1) & (counts <= 5)
        new_hits.append(d["hit10"][new])
    for names, parts in ((WARM, dropped), (KEPT, kept)):
        for name, key in zip(names, ("r10", "r50", "ndcg10"), strict=True):
            out[name] = _mean(parts, key)
    out[CAPPED[0]], out[CAPPED[1]] = _mean(dropped, "c10"), _mean(dropped, "c50")
    hits = np.concatenate(new_hits) if new_hits else np.empty(0)
    out[NEW] = float(hits.mean()) if len(hits) else "no later event of a warm user has a new item"
    out[COLD] = _cold(model, sp)
    return out


def _cold(model: Model, sp: Split) -> float | str:
    score = getattr(model, "scores_from_items", None)
    if score is None:
        return getattr(model, "no_fold_in", "the model cannot score a user known only by items")
    if not sp.known:
        return "no user after the cut has enough events"
    parts = []
    for lo in range(0, len(sp.known), CHUNK):
        known = sp.known[lo : lo + CHUNK]
        s = score(known, sp.n_items).float().clone()
        _leave_out(s, known)
        parts.append(_per_user(s, sp.cold_future[lo : lo + CHUNK]))
    return _mean(parts, "r10")


def _leave_out(s: torch.Tensor, items: list[np.ndarray]) -> None:
    rows = np.repeat(np.arange(len(items)), [len(i) for i in items])
    cols = np.concatenate(items) if items else np.empty(0, np.int64)
    ok = cols < s.shape[1]
    s[torch.from_numpy(rows[ok]), torch.from_numpy(cols[ok])] = -torch.inf


def _count_of(counts: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """Events before the cut of every target, flattened like the hits (0: born later)."""
    t = np.concatenate(targets) if targets else np.empty(0, np.int64)
    return np.where(t < len(counts), counts[np.minimum(t, len(counts) - 1)], 0)


def _per_user(s: torch.Tensor, targets: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per user recall@10/@50, capped recall, NDCG@10; and `hit10` per target (flattened).

    A target ranks r = (items scoring at least as high) - 1, so hit@k ⇔ its score beats the
    (k+1)-th best score strictly; NDCG needs r only for the hits@10."""
    B, n = s.shape
    width = max(1, max((len(t) for t in targets), default=1))
    T = np.full((B, width), -1, np.int64)
    for b, t in enumerate(targets):
        T[b, : len(t)] = t
    Tt = torch.from_numpy(T)
    valid = (Tt >= 0) & (Tt < n)
    ts = s.gather(1, Tt.clamp(0, n - 1)).masked_fill(~valid, -torch.inf)
    top = torch.topk(s, min(51, n), dim=1).values
    inf = torch.full((B, 1), -torch.inf)
    kth = {k: top[:, k : k + 1] if n > k else inf for k in (10, 50)}
    finite = torch.isfinite(ts)
    hit = {k: (ts > kth[k]) & finite for k in (10, 50)}
    rank = (top[:, None, : min(11, n)] >= ts[:, :, None]).sum(-1) - 1
    gain = torch.where(hit[10], 1 / torch.log2(rank.clamp(min=0).double() + 2), 0.0).sum(1)
    m = np.array([len(t) for t in targets], np.float64)
    ideal = np.array([sum(1 / math.log2(r + 2) for r in range(min(10, int(c)))) for c in m])
    h10, h50 = hit[10].sum(1).numpy(), hit[50].sum(1).numpy()
    some = m > 0
    return {
        "r10": (h10 / np.maximum(m, 1))[some],
        "r50": (h50 / np.maximum(m, 1))[some],
        "c10": (h10 / np.minimum(10, np.maximum(m, 1)))[some],
        "c50": (h50 / np.minimum(50, np.maximum(m, 1)))[some],
        "ndcg10": (gain.numpy() / np.maximum(ideal, 1e-12))[some],
        "hit10": hit[10].numpy()[T >= 0],  # in the order of np.concatenate(targets)
    }


def _mean(parts: list[dict[str, np.ndarray]], key: str) -> float | str:
    v = np.concatenate([p[key] for p in parts]) if parts else np.empty(0)
    return float(v.mean()) if len(v) else "no users to evaluate"
