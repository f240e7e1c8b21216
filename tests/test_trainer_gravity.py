"""Gravity: the kept Gramian is the catalogue's, and the sparse gradient is the penalty's."""

from __future__ import annotations

import numpy as np
import torch

from tests.clustered import Clustered
from trainer.core.gravity import gravity_penalty
from trainer.core.learner import Learner
from trainer.core.settings import ModelSettings


def _catalogue_gram(learner: Learner) -> torch.Tensor:
    rows = np.flatnonzero(learner.item_valid[: learner.items.rows_used])
    v = learner.scoring.item_vectors(rows).double()
    return v.T @ v


def test_the_kept_gramian_follows_a_growing_and_evicting_catalogue():
    """Admissions, reused rows and updates all reach VᵀV, which stays the catalogue's own
    (buckets and freed rows excluded) between full recomputes."""
    s = ModelSettings(dim=8, gravity=0.1, min_count=2, buckets=4, max_items=300, seed=2)
    learner = Learner(s)
    data = Clustered(users=200, items=2000, seed=3)  # more items than the cap: rows are reused
    for step in range(40):
        learner.learn(data.batch(256))
        assert learner.gram is not None
        want = _catalogue_gram(learner)
        err = (learner.gram.gram - want).norm() / want.norm()
        assert err < 1e-6, f"step {step}: relative error {err:.2e}"
    assert learner.items.evicted > 0 and learner.items.admitted > 300
    assert torch.linalg.eigvalsh(learner.gram.gram).min() > -1e-6


def test_the_sparse_gradient_is_the_stated_penalty_s():
    """Each touched catalogue row gets the gradient of λ/(|Q||V|)·Σ_i Σ_j (ψ_i·V_j)² over the
    whole catalogue, whatever the number of rows touched; ψ gets the exact gradient."""
    gen = torch.Generator().manual_seed(0)
    n, d, b, lam = 500, 6, 16, 0.3
    V = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(b, d, generator=gen, dtype=torch.float64, requires_grad=True)
    full = lam / (b * n) * ((psi @ V.T) ** 2).sum()
    full.backward()
    want_psi, want_v = psi.grad.clone(), V.grad.clone()
    touched = torch.tensor([3, 17, 400])
    psi2 = psi.detach().clone().requires_grad_(True)
    rows = V.detach()[touched].clone().requires_grad_(True)
    gram = V.detach().T @ V.detach()
    gravity_penalty(psi2, gram, n, rows, lam).backward()
    assert torch.allclose(psi2.grad, want_psi)
    assert torch.allclose(rows.grad, want_v[touched])
