"""river's online matrix factorisation (`reco.BiasedMF`), fed positives and sampled negatives.

BiasedMF is a rating regressor: implicit feedback becomes y = 1 for each event and y = 0 for
`negatives` items drawn uniformly from the items seen so far (the classic one-class trick).
Scoring the whole catalogue reads river's per-id dictionaries into arrays; an item river has not
learned yet scores the global mean plus the user's bias (no latent term).
"""

from __future__ import annotations

import numpy as np
import torch
from river import optim, reco

from bench.models import Batch


class RiverMF:
    no_fold_in = (
        "river's BiasedMF learns a user's vector only by updating the shared model "
        "(learn_one); it has no fold-in that scores a user from a few items without learning"
    )

    def __init__(
        self,
        name: str = "river-biasedmf",
        factors: int = 32,
        lr: float = 0.05,
        l2: float = 0.001,
        negatives: int = 2,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.negatives = negatives
        self.model = reco.BiasedMF(
            n_factors=factors,
            bias_optimizer=optim.SGD(lr),
            latent_optimizer=optim.SGD(lr),
            l2_bias=l2,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self.factors = factors
        self.rng = np.random.default_rng(seed)
        self.n_items = 0

    def learn(self, batch: Batch) -> None:
        self.n_items = max(self.n_items, int(batch.items.max()) + 1)
        negs = self.rng.integers(0, self.n_items, (len(batch), self.negatives)).tolist()
        learn = self.model.learn_one
        for u, i, ns in zip(batch.users.tolist(), batch.items.tolist(), negs, strict=True):
            learn(u, i, 1.0)
            for j in ns:
                if j != i:
                    learn(u, j, 0.0)

    def scores(self, queries: Batch, n_items: int) -> torch.Tensor:
        m = self.model
        V = np.zeros((n_items, self.factors))
        b = np.zeros(n_items)
        for j, vec in m.i_latents.items():
            if int(j) < n_items:  # type: ignore[call-overload]
                V[int(j)] = vec  # type: ignore[call-overload]
        for j, bias in m.i_biases.items():
            if int(j) < n_items:  # type: ignore[call-overload]
                b[int(j)] = bias  # type: ignore[call-overload]
        zero = np.zeros(self.factors)
        users = queries.users.tolist()
        U = np.stack([m.u_latents.get(u, zero) for u in users])
        ub = np.array([m.u_biases.get(u, 0.0) for u in users])
        s = m.global_mean.get() + ub[:, None] + b[None, :] + U @ V.T
        return torch.from_numpy(s.astype(np.float32))
