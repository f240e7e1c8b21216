"""The learner's state: an earlier recstream's checkpoint still loads and scores the same."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load

from trainer.core.features import parse_fields
from trainer.core.learner import Learner
from trainer.core.negatives import parse_negatives
from trainer.core.settings import ModelSettings

DATA = Path(__file__).parent / "data"


def test_a_schema_1_learner_state_loads_and_scores_as_it_did():
    """tests/data/learner-v1.tar.gz: a learner state saved by recstream 0.1 (checkpoint schema 1)
    with the scores it gave three users then."""
    with tarfile.open(DATA / "learner-v1.tar.gz") as tar:
        tensors = load(tar.extractfile("state.safetensors").read())  # type: ignore[union-attr]
        saved = json.load(tar.extractfile("learner.json"))  # type: ignore[arg-type]
    s = saved["settings"]
    settings = ModelSettings(
        dim=s["dim"],
        history=s["history"],
        min_count=s["min_count"],
        buckets=s["buckets"],
        negatives=parse_negatives(s["negatives"]),
        context_fields=parse_fields(s["context_fields"]),
        item_features=parse_fields(s["item_features"]),
        seed=s["seed"],
        popularity_prior=1.0,  # recstream 0.1's defaults, which the state was trained with
        gravity=0.0,
        activity_features=False,
    )
    learner = Learner.from_state(settings, tensors, saved["meta"])
    scores = learner.scoring.scores_for(saved["users"], [saved["context"]] * len(saved["users"]))
    want = torch.tensor(saved["scores"])
    assert torch.allclose(scores[:, saved["rows"]], want, atol=1e-5)
    assert learner.events_applied == saved["meta"]["events_applied"]
    # and it saves in today's layout, which loads back to the same scores
    again = Learner.from_state(settings, *learner.state())
    assert torch.equal(
        again.scoring.scores_for(saved["users"]), learner.scoring.scores_for(saved["users"])
    )


def test_a_twin_copy_is_exact_and_reuses_its_memory():
    """copy_into: a twin equal to the learner (a checkpoint's snapshot), which later learns
    exactly as the learner does, and which a second copy fills without new table memory."""
    from tests.clustered import Clustered

    settings = ModelSettings(dim=8, min_count=2, buckets=4, history=5, seed=3)
    data = Clustered(users=300, items=900, seed=4)
    learner, twin = Learner(settings), Learner(settings)
    for _ in range(4):
        learner.learn(data.batch(256))
    learner.copy_into(twin)
    buffer = twin.model.items.weight.data_ptr()
    nxt = data.batch(256)
    learner.learn(nxt)
    assert twin.events_applied == 4 * 256  # a snapshot: later batches do not reach it
    twin.learn(nxt)
    users = learner.users.admitted_rows()
    assert torch.equal(learner.scoring.scores(users), twin.scoring.scores(users))
    learner.learn(data.batch(256))
    learner.copy_into(twin)
    assert twin.model.items.weight.data_ptr() == buffer
    assert twin.users.ids() == learner.users.ids()


def test_the_dense_adagrad_is_torch_s_to_the_bit():
    """The tower's optimiser replaces torch.optim.Adagrad (whose import costs seconds) with the
    same arithmetic: the same weights after the same gradients."""
    from trainer.core.adagrad import DenseAdagrad

    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3, generator=gen))
    b = torch.nn.Parameter(a.detach().clone())
    mine, theirs = DenseAdagrad([a], lr=0.05), torch.optim.Adagrad([b], lr=0.05)
    for _ in range(4):
        g = torch.randn(5, 3, generator=gen)
        a.grad, b.grad = g.clone(), g.clone()
        mine.step()
        theirs.step()
    assert torch.equal(a, b)
    assert torch.equal(mine.sums[0], theirs.state[b]["sum"])
