"""What the trainer hands to the writer: a store.Snapshot of scoring vectors.

Biases are folded in so a plain dot product is the model's score:
item vector = [V_j, b_j], user vector = [ψ(x_u), 1].
"""

from __future__ import annotations

import numpy as np
import torch

from store import Snapshot
from trainer.learner import Learner

_USER_CHUNK = 65536


@torch.no_grad()
def to_snapshot(learner: Learner, version: int, created_ms: int, extra: dict[str, str]) -> Snapshot:
    V, b = learner.item_matrix()
    items = torch.cat([V, b.unsqueeze(1)], dim=1).numpy().astype(np.float32, copy=True)
    n_users = len(learner.users)
    users = np.empty((n_users, learner.model.dim + 1), dtype=np.float32)
    for lo in range(0, n_users, _USER_CHUNK):
        rows = np.arange(lo, min(lo + _USER_CHUNK, n_users))
        users[rows, :-1] = learner.query_vectors(rows).numpy()
    users[:, -1] = 1.0
    return Snapshot(
        version=version,
        created_ms=created_ms,
        item_ids=learner.items.ids(),
        item_vectors=items,
        user_ids=learner.users.ids(),
        user_vectors=users,
        extra=extra,
    )
