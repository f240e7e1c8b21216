"""The two-tower softmax model: a query tower ψ(x) and an item table V with a per-item bias.

score(x, j) = ψ(x)·V_j + b_j. ψ reads the user's own embedding and the mean of the vectors of
the user's recent items (the item table itself, so a new user's history already lives in item
space), concatenated and passed through an MLP whose hidden sizes are a setting (() = linear).
Tables are `EmbeddingTable`s (row-sparse Adagrad); the tower is a small dense nn.Module.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import ModelSettings
from trainer.table import EmbeddingTable


def build_tower(in_dim: int, layers: tuple[int, ...], out_dim: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = in_dim
    for size in layers:
        mods += [nn.Linear(width, size), nn.ReLU()]
        width = size
    last = nn.Linear(width, out_dim)
    if not layers:
        # start linear towers at ψ = user + history: a sensible model before any step
        with torch.no_grad():
            last.weight.copy_(torch.cat([torch.eye(out_dim), torch.eye(out_dim)], dim=1))
            last.bias.zero_()
    mods.append(last)
    return nn.Sequential(*mods)


class TwoTower:
    def __init__(self, s: ModelSettings) -> None:
        gen = self.generator = torch.Generator().manual_seed(s.seed)  # new rows' initial values
        torch.manual_seed(s.seed)  # the tower's initial weights
        std = 1.0 / s.dim**0.5
        self.dim = s.dim
        self.users = EmbeddingTable(s.dim, lr=s.lr, init_std=std, generator=gen)
        self.items = EmbeddingTable(s.dim, lr=s.lr, init_std=std, generator=gen)
        self.item_bias = EmbeddingTable(1, lr=s.lr, init_std=0.0, generator=gen)
        self.tower = build_tower(2 * s.dim, s.layers, s.dim)
        self.dense_opt = torch.optim.Adagrad(self.tower.parameters(), lr=s.dense_lr)

    def query(self, user_vecs: torch.Tensor, history_mean: torch.Tensor) -> torch.Tensor:
        """ψ(x) for a batch: (B, d) user embeddings (zeros for unknown users) and (B, d)
        mean history vectors (zeros for an empty history)."""
        return self.tower(torch.cat([user_vecs, history_mean], dim=1))

    def tables(self) -> dict[str, EmbeddingTable]:
        return {"users": self.users, "items": self.items, "item_bias": self.item_bias}
