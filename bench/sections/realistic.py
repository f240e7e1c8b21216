"""Realistic: every model on `sizes.seeds` seeds of the ratings stream, judged as on real data.

The stream (`bench.ratings`) has the regime a public ratings dataset showed (drifting
popularity, few events per user, a long tail, ratings as implicit feedback); the evaluation
(`bench.judge`) is the held-out one that dataset was judged by. Each figure is the mean over
seeds ± the sample sd; the per-seed figures follow in their own table.
"""

from __future__ import annotations

from bench import judge, realistic
from bench.progress import Progress
from bench.results import Results
from bench.sections import variants
from bench.sizes import Sizes

REALISTIC, PER_SEED = "realistic", "realistic, per seed"
DECAYED = "popular-decayed (half-life 1d)"
KNN = "item-kNN (cosine)"
HEADLINES = {judge.WARM[0], judge.COLD}  # for the default softmax, DECAYED and KNN
VERSUS = ((DECAYED, (judge.WARM[0], judge.WARM[1], judge.COLD)), (KNN, (judge.COLD,)))


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    default = variants.default()
    softmax = [default]
    why = default.problem()
    if why:
        results.pending(REALISTIC, judge.WARM[0], default.name, why)
        softmax = []
    seeds = list(range(sizes.seed, sizes.seed + sizes.seeds))
    scale = realistic.Scale(sizes.ratings_events, sizes.ratings_users, sizes.ratings_items)

    def step(fraction: float, what: str) -> None:
        progress.step(f"realistic, {what}")
        progress.fraction(fraction)

    out = realistic.run(seeds, scale, softmax, progress=step)
    results.note(
        REALISTIC,
        "Ratings streams (bench.ratings, one per seed): "
        + " ".join(f"{s}." for s in out.streams)
        + " Each model learns the first 80% of the positives (time order, batches of 1024; "
        "MF refits at the cut) and is frozen. Warm users (a sample of users with positives "
        "before and after the cut): recall@k = hits in the top k / the user's later items, "
        "NDCG@10, averaged over users; the headline columns leave the user's earlier items "
        "out of the ranking, the 'past kept' ones do not; 'hits@k / min(k, n)' caps the "
        "denominator. Cold-3: users whose first positive is after the cut, with at least 4; "
        "scored from their first 3 items alone (softmax: ψ from those items, as "
        "store.Reader.recommend_for serves), recall@10 of the rest. New-item recall@10: warm "
        "users' later events whose item had 1-5 events before the cut. Figures: mean over "
        "seeds ± sample sd.",
    )
    report(results, out)


def report(results: Results, out: realistic.Outcome) -> None:
    _versus(results, out)
    default = variants.default().name
    for model, by_metric in out.values.items():
        for metric in judge.METRICS:
            values = by_metric.get(metric, [])
            mean, sd, why = realistic.summary(values)
            unit = "ev/s" if metric == judge.SPEED else ""
            if mean is None:
                results.pending(REALISTIC, metric, model, why)
            else:
                headline = metric in HEADLINES and model in (default, DECAYED, KNN)
                results.add(REALISTIC, metric, model, mean, unit, headline=headline, spread=sd)
        for k, seed in enumerate(out.seeds):
            for metric in (*judge.WARM, judge.COLD, judge.NEW):
                values = by_metric.get(metric, [])
                v = values[k] if k < len(values) else "not measured"
                subject = f"{model} [seed {seed}]"
                if isinstance(v, float):
                    results.add(PER_SEED, metric, subject, v)
                else:
                    results.pending(PER_SEED, metric, subject, v)


def _versus(results: Results, out: realistic.Outcome) -> None:
    """The default softmax against decayed popularity and item-kNN, seed by seed."""
    soft = variants.default().name
    if soft not in out.values:
        return
    parts = []
    for other, metrics in VERSUS:
        if other not in out.values:
            continue
        for metric in metrics:
            diffs = realistic.paired(out, soft, other, metric)
            shown = ", ".join(f"{d:+.3f}" if isinstance(d, float) else d for d in diffs)
            parts.append(f"{metric} vs {other}: {shown}")
    results.note(REALISTIC, "Default softmax minus, seed by seed: " + "; ".join(parts) + ".")
