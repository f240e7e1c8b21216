"""Quality and cold start: every model on one trending stream, one split, one metric code.

Rows: progressive recall@10/@100 over the whole stream; recall@10/@100 on the time-ordered
holdout (last 20%, users seen before the cut); cold start (a user's 1st, first 3, first 10
events; items seen only 1–5 times before); and each model's training speed on the stream.
"""

from __future__ import annotations

import numpy as np

from bench import streams
from bench.baselines import WALS, DecayedPopular, MostPopular, RiverMF
from bench.harness import KS, EvalPlan, Outcome, run
from bench.models import Model, Softmax
from bench.progress import Progress
from bench.results import Results
from bench.sections import variants
from bench.sizes import Sizes

QUALITY, COLD = "quality", "cold start"
DECAYED = "popular-decayed (half-life 1d)"


def models(sizes: Sizes, results: Results) -> list[Model]:
    out: list[Model] = []
    for v in [variants.default(), *variants.strategies(), *variants.extras()]:
        why = v.problem()
        if why:
            for metric in ("progressive recall@10", "holdout recall@10"):
                results.pending(QUALITY, metric, v.name, why)
            continue
        out.append(Softmax(v.name, v.settings(sizes.seed)))
    out += [
        WALS("WALS w0=0.01 (implicit ALS)", w0=0.01, retrain_every=sizes.als_retrain_every),
        RiverMF("river BiasedMF (+2 sampled negatives)", seed=sizes.seed),
        MostPopular("most-popular (all time)"),
        DecayedPopular(streams.DAY_MS, DECAYED),
    ]
    return out


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    st = streams.trending(sizes.events, sizes.users, sizes.items, seed=sizes.seed)
    results.note(
        QUALITY,
        f"Trending stream: {len(st):,} events, {st.n_users:,} users, {st.n_items:,} items, "
        "16 taste clusters, a new hot set every 1/20 of the stream (new releases + random "
        "items), users and items arriving over time. Batches of "
        f"{sizes.batch}; {sizes.eval_per_batch} events per batch scored by every model before "
        "any learns the batch (the same events for all); ranks by trainer.core.evaluation.ranks_of "
        "over all items seen so far (an unseen target item is a miss for every model). "
        "Holdout: the models as they stand after the first 80%, scored on up to "
        "4,000 later events of users seen before the cut (MF refits on the 80% first).",
    )
    ms = models(sizes, results)
    total = len(st)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        progress.fraction(done / total)

    plan = EvalPlan(sizes.batch, sizes.eval_per_batch, seed=sizes.seed)
    outcomes = run(st, ms, plan, tick)
    report(results, st, outcomes)


def report(results: Results, st: streams.Stream, outcomes: dict[str, Outcome]) -> None:
    user_prior, item_prior = st.prior_counts()
    buckets = {
        "user's 1st event": lambda e: user_prior[e] == 0,
        "user's first 3": lambda e: user_prior[e] < 3,
        "user's first 10": lambda e: user_prior[e] < 10,
        "new items (seen 1-5x)": lambda e: (item_prior[e] >= 1) & (item_prior[e] <= 5),
    }
    curve: dict[str, list[float]] = {}
    for name, o in outcomes.items():
        headline = name in (variants.default().name, DECAYED) or name.startswith("WALS")
        for k in KS:
            results.add(QUALITY, f"progressive recall@{k}", name, o.recall(k), headline=headline)
        for k in KS:
            results.add(QUALITY, f"holdout recall@{k}", name, o.holdout_recall(k))
        results.add(QUALITY, "train events/s", name, len(st) / max(o.learn_s, 1e-9), "ev/s")
        for label, pick in buckets.items():
            where = pick(o.events)
            for k in KS:
                results.add(COLD, f"recall@{k} {label}", name, o.recall(k, where), headline=False)
        deciles = np.minimum(o.events * 10 // len(st), 9)
        curve[name] = [float(np.mean(o.ranks[deciles == d] < 10)) for d in range(10)]
    results.series["recall_over_time"] = curve
    _where_popularity_wins(results)


def _where_popularity_wins(results: Results) -> None:
    """Say plainly where decayed popularity beats the default softmax model."""
    soft = next(
        (r.subject for r in results.section(QUALITY) if r.subject.startswith("softmax default")),
        None,
    )
    if soft is None:
        return
    losses = []
    for sec in (QUALITY, COLD):
        for r in results.section(sec):
            if r.subject != DECAYED or r.value is None or r.metric == "train events/s":
                continue
            mine = results.get(sec, r.metric, soft)
            if mine is not None and mine < r.value:
                losses.append(f"{r.metric} ({mine:.3f} vs {r.value:.3f})")
    text = (
        "Decayed popularity beats the default softmax model on: " + "; ".join(losses) + "."
        if losses
        else "The default softmax model beats decayed popularity on every quality row."
    )
    results.note(QUALITY, text)
