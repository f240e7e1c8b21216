"""Folding on K disjoint groups: how many top-k recommendations come from a foreign group.

Users of a group only ever interact with items of that group, so a recommendation from a group
the user never touched is spurious: the model folded unrelated groups together. Folding rate =
share of top-10 recommendations (over the whole catalogue) from groups the user never touched,
over a sample of users, after one pass over the stream.
"""

from __future__ import annotations

import numpy as np

from bench import streams
from bench.baselines import WALS
from bench.harness import EvalPlan, run
from bench.models import Batch, Model, Softmax
from bench.progress import Progress
from bench.results import Results
from bench.sections.variants import Variant
from bench.sizes import Sizes

SECTION = "folding"
TOP_K = 10

SOFTMAX = [
    Variant("softmax none (positives only)", "none"),
    Variant("softmax popularity:1024 (sampled)", "popularity:1024"),
    Variant("softmax popularity:1024 + gravity 0.1", "popularity:1024", {"gravity": 0.1}),
    Variant("softmax none + gravity 0.1", "none", {"gravity": 0.1}),
]


def folding_rate(model: Model, st: streams.Stream, users: np.ndarray) -> float:
    touched = np.zeros((st.n_users, int(st.item_cluster.max()) + 1), bool)
    touched[st.users, st.item_cluster[st.items]] = True
    q = Batch(users, np.zeros_like(users), np.full(len(users), st.ts[-1]))
    scores = model.scores(q, st.n_items)
    top = scores.topk(TOP_K, dim=1).indices.numpy()
    foreign = ~touched[users[:, None], st.item_cluster[top]]
    return float(foreign.mean())


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    groups = 8
    st = streams.grouped(
        sizes.side_events, sizes.side_users, sizes.side_items, groups, seed=sizes.seed
    )
    results.note(
        SECTION,
        f"Grouped stream: {len(st):,} events, {groups} disjoint groups of users and items "
        f"(affinity 1). Folding rate = share of top-{TOP_K} recommendations from groups the "
        f"user never touched, over up to 1,000 users; chance level is {(groups - 1) / groups:.0%}. "
        "WALS: w0 is the weight of unobserved pairs.",
    )
    ms: list[Model] = []
    for v in SOFTMAX:
        why = v.problem()
        if why:
            results.pending(SECTION, f"folding rate @{TOP_K}", v.name, why)
            continue
        ms.append(Softmax(v.name, v.settings(sizes.seed)))
    ms += [
        WALS("WALS w0=0.001 (small)", w0=0.001, retrain_every=len(st)),
        WALS("WALS w0=0.1 (large)", w0=0.1, retrain_every=len(st)),
    ]
    total, done = len(st), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        progress.fraction(0.9 * done / total)

    plan = EvalPlan(sizes.batch, max(16, sizes.eval_per_batch // 4), holdout_at=0, seed=sizes.seed)
    outcomes = run(st, ms, plan, tick)
    rng = np.random.default_rng(sizes.seed)
    users = np.sort(rng.choice(st.n_users, min(1000, st.n_users), replace=False))
    for m in ms:
        fit = getattr(m, "fit", None)
        if callable(fit):
            fit()  # MF on the whole stream
        results.add(
            SECTION,
            f"folding rate @{TOP_K}",
            m.name,
            folding_rate(m, st, users),
            "%",
            headline=True,
        )
        results.add(SECTION, "progressive recall@10", m.name, outcomes[m.name].recall(10))
