"""What the corrections are for, measured on small streams where the truth is known:
logQ makes sampled training rank like the full softmax; negatives and gravity stop folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream.synthetic import World, generate
from trainer.core.evaluation import folding_rate
from trainer.core.learner import EventColumns, Learner
from trainer.core.negatives import parse_negatives
from trainer.core.settings import ModelSettings


def _batches(world: World, events: int, size: int) -> list[EventColumns]:
    evs = list(generate(world, events))
    out = []
    for k in range(0, len(evs), size):
        chunk = evs[k : k + size]
        out.append(
            EventColumns(
                [str(e["user"]) for e in chunk],
                [e["item"] for e in chunk],
                np.array([e["ts"] for e in chunk], dtype=np.int64),
                np.ones(len(chunk), np.float32),
            )
        )
    return out


def _train(batches: list[EventColumns], spec: str, **kw) -> Learner:
    settings = ModelSettings(dim=16, negatives=parse_negatives(spec), eval_sample=0, **kw)
    learner = Learner(settings)
    for b in batches:
        learner.learn(b)
    return learner


def _top10(learner: Learner, users: list[str]) -> list[set[str]]:
    ids = learner.items.ids()
    top = learner.scoring.scores(learner.users.lookup(users)).topk(10).indices.tolist()
    return [{ids[j] for j in row} for row in top]


@pytest.mark.slow
def test_logq_corrected_sampling_ranks_like_the_full_softmax():
    """Top-10 overlap with a full-softmax model. The bar is relative to the overlap of two
    full-softmax models that differ only in their seed (the noise ceiling, ~0.88 here):
    corrected sampling must reach 80% of it; measured 0.79 (popularity:32) and 0.89 (in-batch)
    against 0.52 and 0.22 without the correction."""
    torch.set_num_threads(1)
    batches = _batches(World(users=500, items=300, clusters=5, affinity=0.8, seed=2), 60_000, 256)
    users = [str(u) for u in range(0, 500, 2)]
    ref = _top10(_train(batches, "full", half_life_ms=0), users)

    def overlap(learner: Learner) -> float:
        return float(
            np.mean([len(a & b) / 10 for a, b in zip(ref, _top10(learner, users), strict=True)])
        )

    ceiling = overlap(_train(batches, "full", half_life_ms=0, seed=1))
    for spec in ("popularity:32", "in-batch"):
        corrected = overlap(_train(batches, spec, half_life_ms=0))
        uncorrected = overlap(_train(batches, spec, half_life_ms=0, logq=False))
        assert corrected >= 0.8 * ceiling, (spec, corrected, ceiling)
        assert uncorrected <= corrected - 0.15, (spec, corrected, uncorrected)


def test_negatives_then_gravity_stop_folding():
    """K=6 disjoint groups; ids only (no history, no popularity prior), so nothing but the
    loss separates groups.
    Measured: none 0.80, uniform:2 0.24, uniform:2 + gravity 0.004, none + gravity 0.15
    (random ranking: 0.83)."""
    torch.set_num_threads(1)
    world = World(users=600, items=600, clusters=6, affinity=1.0, zipf=1.0, seed=3)
    batches = _batches(world, 40_000, 256)

    def rate(learner: Learner) -> float:
        rows = learner.users.admitted_rows()
        users = [learner.users.id_of(int(r)) for r in rows]
        top = learner.scoring.scores(rows).topk(10).indices.numpy()
        groups = np.array([-1 if i is None else world.item_cluster(i) for i in learner.items.ids()])
        return folding_rate(groups[top], [{world.user_cluster(int(u))} for u in users])

    plain = {"history": 0, "popularity_prior": 0.0, "activity_features": False}
    none = rate(_train(batches, "none", gravity=0.0, **plain))
    sampled = rate(_train(batches, "uniform:2", gravity=0.0, **plain))
    gravity = rate(_train(batches, "uniform:2", gravity=0.1, **plain))
    assert none > 0.4, none
    assert sampled < none / 2, (none, sampled)
    assert gravity < sampled / 2, (sampled, gravity)
    assert rate(_train(batches, "none", gravity=0.1, **plain)) < none / 2  # gravity alone helps
