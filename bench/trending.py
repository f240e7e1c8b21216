"""How the default negatives were chosen: softmax variants against decayed popularity on a
trending stream (half the events follow a hot set that changes every 50k events, half follow
the user's taste cluster).

`python -m bench.trending [--events N] "popularity:256,in-batch" "in-batch;popularity_prior=0.0"`
prints progressive recall@10/@100 (32 queries a batch, scored before learning) and training
events/s per variant; a variant is `negatives[;setting=value...]` (ModelSettings fields).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from trainer.core.learner import EventColumns, Learner
from trainer.core.negatives import parse_negatives
from trainer.core.popularity import DecayedCounts
from trainer.core.settings import ModelSettings
from trainer.daemon.allocator import keep_freed_memory

DEFAULT_VARIANTS = (
    "popularity:256,in-batch",
    "popularity:256,in-batch;popularity_prior=0.0",
    "in-batch",
    "in-batch;popularity_prior=0.0",
    "popularity:1024,in-batch",
    "popularity:256,in-batch,hard:32",
)


def stream(
    events: int, users: int = 20_000, items: int = 20_000, clusters: int = 20, seed: int = 0
):
    rng = np.random.default_rng(seed)
    ucl = rng.integers(0, clusters, users)
    icl = np.arange(items) % clusters
    zipf = 1.0 / np.arange(1, items + 1) ** 1.1
    zipf /= zipf.sum()
    per_cluster = [np.flatnonzero(icl == k) for k in range(clusters)]
    zc = 1.0 / np.arange(1, items // clusters + 1) ** 1.1
    zc /= zc.sum()
    u = rng.integers(0, users, events)
    phase = np.arange(events) // 50_000
    it = np.empty(events, np.int64)
    trend = rng.random(events) < 0.5
    for p in np.unique(phase):
        perm = np.random.default_rng(100 + p).permutation(items)
        m = phase == p
        t = m & trend
        it[t] = perm[rng.choice(items, size=int(t.sum()), p=zipf)]
        for k in range(clusters):
            mk = m & ~trend & (ucl[u] == k)
            it[mk] = per_cluster[k][rng.choice(len(per_cluster[k]), size=int(mk.sum()), p=zc)]
    ts = 1_700_000_000_000 + np.arange(events) * 60_000  # a minute apart
    return u, it, ts


def parse_variant(text: str) -> ModelSettings:
    neg, *rest = text.split(";")
    changes: dict[str, Any] = {}
    for part in rest:
        key, value = part.split("=")
        changes[key] = float(value) if "." in value else int(value)
    return ModelSettings(
        negatives=parse_negatives(neg), eval_sample=32, eval_budget=10.0, **changes
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trending", description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="*", default=list(DEFAULT_VARIANTS))
    p.add_argument("--events", type=int, default=400_000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    keep_freed_memory()  # as the trainer runs
    u, it, ts = stream(a.events)
    batches = [
        EventColumns(
            [str(x) for x in u[k : k + 1024]],
            [f"i{x}" for x in it[k : k + 1024]],
            ts[k : k + 1024],
            np.ones(len(u[k : k + 1024]), np.float32),
        )
        for k in range(0, a.events, 1024)
    ]
    for variant in a.variants:
        learner = Learner(parse_variant(variant))
        train_ms = 0.0
        for b in batches:
            st = learner.learn(b)
            train_ms += st.timings_ms["sample"] + st.timings_ms["step"]
        f = learner.figures()
        print(
            f"{variant:50s} recall@10 {f['recall@10']:.4f}  recall@100 {f['recall@100']:.4f}  "
            f"train {a.events / train_ms * 1000:,.0f} ev/s",
            flush=True,
        )
    rng = np.random.default_rng(5)
    for half_life_d in (1, 7):
        counts = DecayedCounts(half_life_d * 86_400_000)
        hits = {10: 0, 100: 0}
        n = 0
        for k in range(0, a.events, 1024):
            items, t = it[k : k + 1024], ts[k : k + 1024]
            if counts.rows:
                order = np.argsort(-counts.stored[: counts.rows])
                rank = np.full(it.max() + 1, 10**9)
                rank[order] = np.arange(len(order))
                r = rank[items[rng.choice(len(items), 32, replace=False)]]
                for top in hits:
                    hits[top] += int((r < top).sum())
                n += 32
            counts.add(items, t)
        print(
            f"{f'decayed popularity, half-life {half_life_d}d':50s} recall@10 {hits[10] / n:.4f}  "
            f"recall@100 {hits[100] / n:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
