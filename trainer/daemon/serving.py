"""What the trainer hands to the writer: a store.Snapshot of scoring vectors.

Biases are folded in so a plain dot product is the model's score:
item vector = [Ṽ_j, b_j + prior_j], user vector = [ψ(x_u), 1]. Only ids with a row of their
own are published (shared bucket rows are not items or users). The snapshot also carries the
query tower (for users without a vector) and each user's and item's activity stamp, so that the
writer rewrites only the users active, and (in a delta version) the item rows changed, since the
version it published last. An item with item features is stamped as changed in every snapshot:
its Ṽ moves whenever a shared feature row does, which the learner does not track per item.
"""

from __future__ import annotations

import numpy as np
import torch

from store import Snapshot
from store.tower import QueryTower
from trainer.core.learner import Learner

_USER_CHUNK = 65536


UserVectors = tuple[list[str], np.ndarray, np.ndarray]  # ids, [ψ, 1] rows, activity stamps


@torch.no_grad()
def user_vectors(learner: Learner) -> UserVectors:
    """The published vector of every user with a row of its own, and its activity stamp."""
    user_rows = np.sort(learner.users.admitted_rows())
    users = np.empty((len(user_rows), learner.model.dim + 1), dtype=np.float32)
    for lo in range(0, len(user_rows), _USER_CHUNK):
        chunk = user_rows[lo : lo + _USER_CHUNK]
        users[lo : lo + len(chunk), :-1] = learner.scoring.query_vectors(chunk).numpy()
    users[:, -1] = 1.0
    ids = [learner.users.id_of(int(r)) or "" for r in user_rows]
    return ids, users, learner.user_active[user_rows].copy()


@torch.no_grad()
def to_snapshot(
    learner: Learner,
    version: int,
    created_ms: int,
    extra: dict[str, str],
    users: UserVectors | None = None,
) -> Snapshot:
    """The snapshot of `learner`; `users` (a group's, gathered) instead of its own users."""
    rows, V, offset = learner.scoring.item_matrix()
    items = torch.cat([V, offset.unsqueeze(1)], dim=1).numpy().astype(np.float32, copy=True)
    item_ids = [learner.items.id_of(int(r)) or "" for r in rows]
    item_stamps = learner.item_active[rows].copy()
    if len(learner.model.item_feats):
        featured = (learner.item_features.rows[rows] >= 0).any(axis=1)
        item_stamps[featured] = learner.events_applied
    user_ids, user_vecs, user_stamps = users if users is not None else user_vectors(learner)
    return Snapshot(
        version=version,
        created_ms=created_ms,
        item_ids=item_ids,
        item_vectors=items,
        user_ids=user_ids,
        user_vectors=user_vecs,
        extra=extra,
        tower=export_tower(learner).to_bytes(),
        # "active since the last publish" = stamped after that version's stamp
        user_stamps=user_stamps,
        stamp=learner.events_applied,
        item_stamps=item_stamps,
    )


@torch.no_grad()
def export_tower(learner: Learner) -> QueryTower:
    """The query tower in the published form (store.tower): spec + float32 weights."""
    m, s = learner.model, learner.settings
    weights: dict[str, np.ndarray] = {}
    for k, table in enumerate(m.context):
        weights[f"context{k}"] = table.weight[: s.feature_buckets].numpy().copy()
    linears = [mod for mod in m.tower if isinstance(mod, torch.nn.Linear)]
    for k, lin in enumerate(linears):
        weights[f"layer{k}.weight"] = lin.weight.detach().numpy().copy()
        weights[f"layer{k}.bias"] = lin.bias.detach().numpy().copy()
    enc = learner.context
    std = enc.std()
    return QueryTower(
        dim=m.dim,
        history=s.history,
        context=[{"field": f, "buckets": s.feature_buckets} for f in enc.cat],
        numeric=[
            {"field": f, "mean": float(enc.mean[k]), "std": float(std[k])}
            for k, f in enumerate(enc.num)
        ],
        weights=weights,
        layers=len(linears),
        history_decay=s.history_decay,
        activity=s.activity_features,
    )
