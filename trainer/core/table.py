"""An embedding table that grows in chunks and trains with row-wise sparse Adagrad.

Only the rows a batch touches are read and updated, so a step costs O(batch), not O(table):
the reason dense Adam over 1M items is 20-100x slower on this machine (DESIGN.md).
Optimiser state lives beside the weights, so growing or resetting a row is one place.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.core.state import Arrays, Meta, as_tensor

INITIAL_ACCUMULATOR = 0.1  # Adagrad's usual start: damps the first steps of a new row


class EmbeddingTable:
    def __init__(
        self,
        dim: int,
        *,
        lr: float,
        init_std: float,
        generator: torch.Generator,
        capacity: int = 1024,
        eps: float = 1e-8,
    ) -> None:
        self.dim = dim
        self.lr = lr
        self.init_std = init_std
        self.eps = eps
        self._gen = generator
        self.weight = torch.empty(0, dim)
        self.accum = torch.empty(0, dim)
        self.used = 0  # rows handed out so far (the rest is room to grow into)
        self._grow_to(capacity)

    @property
    def capacity(self) -> int:
        return self.weight.shape[0]

    def ensure(self, rows: int) -> None:
        """Rows [0, `rows`) are in use; make room for them (doubling, so growth is amortised
        O(1))."""
        if rows > self.capacity:
            self._grow_to(max(rows, 2 * self.capacity))
        self.used = max(self.used, rows)

    def _grow_to(self, capacity: int) -> None:
        old = self.capacity
        weight = torch.empty(capacity, self.dim)
        accum = torch.empty(capacity, self.dim)
        weight[:old] = self.weight
        accum[:old] = self.accum
        self.weight, self.accum = weight, accum
        self.reset(torch.arange(old, capacity))

    def reset(self, rows: torch.Tensor) -> None:
        """Fresh random weights and optimiser state for `rows` (new or reused rows)."""
        if rows.numel() == 0:
            return
        fresh = torch.randn(rows.numel(), self.dim, generator=self._gen) * self.init_std
        self.weight[rows] = fresh
        self.accum[rows] = INITIAL_ACCUMULATOR

    def gather(self, unique_rows: torch.Tensor) -> torch.Tensor:
        """A leaf copy of `unique_rows` that collects gradients for `apply`."""
        return self.weight[unique_rows].requires_grad_(True)

    @torch.no_grad()
    def apply(self, unique_rows: torch.Tensor, grad: torch.Tensor) -> None:
        """One Adagrad step on `unique_rows` (must be unique: one update per row)."""
        acc = self.accum[unique_rows].addcmul_(grad, grad)
        self.accum[unique_rows] = acc
        self.weight[unique_rows] -= self.lr * grad / (acc.sqrt_() + self.eps)

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        """The rows in use, and the capacity: growth draws new rows' initial values from the
        shared generator, so a resumed table must grow at the same points to stay exact."""
        weight, accum = self.weight[: self.used], self.accum[: self.used]
        arrays: Arrays = {
            "weight": weight.clone() if copy else weight,
            "accum": accum.clone() if copy else accum,
        }
        return arrays, {"capacity": self.capacity, "used": self.used}

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        weight, accum = as_tensor(arrays["weight"]), as_tensor(arrays["accum"])
        rows = weight.shape[0]
        if weight.shape[1] != self.dim:
            raise ValueError(f"table dim {weight.shape[1]} != model dim {self.dim}")
        # a checkpoint of recstream 0.1 holds no capacity: the table is as big as its rows
        capacity = int(meta.get("capacity", rows))
        if capacity > self.capacity:
            self._grow_to(capacity)
        self.weight[:rows] = weight
        self.accum[:rows] = accum
        self.used = int(meta.get("used", rows))


class SparseGrads:
    """The rows one step reads from each table, as gradient-collecting leaves; `apply` after
    backward updates exactly those rows."""

    def __init__(self) -> None:
        self._parts: list[tuple[EmbeddingTable, torch.Tensor, torch.Tensor]] = []

    def gather(self, table: EmbeddingTable, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Leaf of the unique `rows`, and the index mapping each entry of `rows` into it."""
        unique, inverse = np.unique(rows, return_inverse=True)
        leaf = self.gather_unique(table, unique)
        return leaf, torch.from_numpy(inverse)

    def gather_unique(self, table: EmbeddingTable, unique_rows: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(unique_rows)
        leaf = table.gather(rows)
        self._parts.append((table, rows, leaf))
        return leaf

    def apply(self) -> None:
        for table, rows, leaf in self._parts:
            if leaf.grad is not None:
                table.apply(rows, leaf.grad)
        self._parts.clear()

    def take(self, tables: dict[str, EmbeddingTable]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The gradients of `tables` (by name), each merged to unique rows — what a group of
        learners sums across ranks before applying (`apply_summed`); they leave this object."""
        names = {id(table): name for name, table in tables.items()}
        found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        kept = []
        for table, rows, leaf in self._parts:
            name = names.get(id(table))
            if name is None:
                kept.append((table, rows, leaf))
            elif leaf.grad is not None:
                found.setdefault(name, []).append((rows.numpy(), leaf.grad.numpy()))
        self._parts = kept
        return {name: merged(parts) for name, parts in found.items()}


def merged(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, grads) pairs, in order, summed per unique row (the same sums on every rank)."""
    rows = np.concatenate([r for r, _ in parts])
    grads = np.concatenate([g for _, g in parts])
    unique, inverse = np.unique(rows, return_inverse=True)
    total = np.zeros((len(unique), grads.shape[1]), dtype=grads.dtype)
    np.add.at(total, inverse, grads)
    return unique, total
