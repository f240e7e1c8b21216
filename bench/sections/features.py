"""Query features: a stream where the next item depends on a context field (the "mode").

The softmax model with the field in its query tower against the same model without it; MF and
popularity cannot use the field at all. The "with feature" arm runs once the learner reads
context (issue 4): `bench.capabilities.context_features` says so at run time.
"""

from __future__ import annotations

from bench import streams
from bench.baselines import WALS, DecayedPopular
from bench.harness import EvalPlan, run
from bench.models import Model, Softmax, Unsupported
from bench.progress import Progress
from bench.results import Results
from bench.sections import variants
from bench.sizes import Sizes

SECTION = "query features"
WITH, WITHOUT = "softmax with the mode feature", "softmax without it"


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    modes = 4
    st = streams.contextual(
        sizes.side_events, sizes.side_users, sizes.side_items, modes=modes, seed=sizes.seed
    )
    results.note(
        SECTION,
        f"Contextual stream: {len(st):,} events, {st.n_items:,} items in 8 clusters x {modes} "
        "modes; an event's item comes from the block (user's cluster, event's mode), the mode "
        "is in the event's context. Progressive recall over the whole stream.",
    )
    v = variants.default()
    ms: list[Model] = [Softmax(WITHOUT, v.settings(sizes.seed))]
    try:
        ms.append(Softmax(WITH, v.settings(sizes.seed), context=True))
    except Unsupported as e:
        for k in (10, 100):
            results.pending(SECTION, f"progressive recall@{k}", WITH, str(e))
        results.pending(SECTION, "gain in recall@10 (with / without)", "softmax", str(e))
    ms += [
        WALS("WALS w0=0.01", w0=0.01, retrain_every=sizes.als_retrain_every),
        DecayedPopular(streams.DAY_MS, "popular-decayed"),
    ]
    total, done = len(st), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        progress.fraction(done / total)

    plan = EvalPlan(sizes.batch, sizes.eval_per_batch, holdout_at=0, seed=sizes.seed)
    outcomes = run(st, ms, plan, tick)
    if WITH in outcomes:
        gain = outcomes[WITH].recall(10) / max(outcomes[WITHOUT].recall(10), 1e-9)
        results.add(SECTION, "gain in recall@10 (with / without)", "softmax", gain, "×")
    for name, o in outcomes.items():
        for k in (10, 100):
            headline = k == 10 and name in (WITH, WITHOUT)
            results.add(SECTION, f"progressive recall@{k}", name, o.recall(k), headline=headline)
