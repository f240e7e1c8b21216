"""What every benchmarked model offers the harness, and the softmax model behind it.

A model learns batches of integer events and scores queries over the catalogue seen so far:
`scores(batch, n_items)` → (B, n_items) float tensor, one row per query, for item ids
0..n_items-1 (ids are first-appearance order, see `bench.streams`). The harness turns those
scores into ranks with `trainer.evaluation.ranks_of`, the same code for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from trainer.config import ModelSettings
from trainer.learner import EventColumns, Learner


@dataclass(frozen=True)
class Batch:
    """A slice of a stream: events as integer columns (see `bench.streams.Stream`)."""

    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    context: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> Batch:
        ctx = None if self.context is None else self.context[rows]
        return Batch(self.users[rows], self.items[rows], self.ts[rows], ctx)


class Model(Protocol):
    name: str

    def learn(self, batch: Batch) -> None: ...

    def scores(self, queries: Batch, n_items: int) -> torch.Tensor: ...


class Unsupported(Exception):
    """A configuration the code under test cannot run yet; the message says what is missing."""


_ids: list[str] = []


def str_ids(ids: np.ndarray, prefix: str = "") -> list[str]:
    """Integer ids as the strings the trainer's vocabulary keys on (cached)."""
    top = int(ids.max()) + 1 if len(ids) else 0
    if top > len(_ids):
        _ids.extend(str(k) for k in range(len(_ids), max(top, 2 * len(_ids))))
    if prefix:
        return [prefix + _ids[k] for k in ids.tolist()]
    return [_ids[k] for k in ids.tolist()]


def columns(batch: Batch) -> EventColumns:
    """A batch as the learner's EventColumns: users "<n>", items "i<n>", unit weights."""
    return EventColumns(
        users=str_ids(batch.users),
        items=str_ids(batch.items, "i"),
        ts=batch.ts.astype(np.int64),
        weights=np.ones(len(batch), np.float32),
    )


def pad_to(scores: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B, m) scores → (B, n_items): items a model has never seen score -inf."""
    m = scores.shape[1]
    if m == n_items:
        return scores
    if m > n_items:
        return scores[:, :n_items]
    return torch.cat([scores, scores.new_full((scores.shape[0], n_items - m), -torch.inf)], 1)


class Softmax:
    """The project's model (trainer.learner.Learner) behind the benchmark protocol.

    A query for a user the learner has not seen yet (a first event) is scored with ψ of an
    empty query (zero user vector, empty history): `new_user_scores` is the one place that does
    it until the learner can score unknown users itself.
    """

    def __init__(self, name: str, settings: ModelSettings, context: bool = False) -> None:
        self.name = name
        self.settings = settings
        self.learner = Learner(settings)
        self.context = context
        if context:
            from bench.capabilities import context_features

            reason = context_features()
            if reason:
                raise Unsupported(reason)

    def learn(self, batch: Batch) -> None:
        self.learner.learn(columns(batch))

    @torch.no_grad()
    def scores(self, queries: Batch, n_items: int) -> torch.Tensor:
        learner = self.learner
        known = queries.users < len(learner.users)
        out = torch.empty(len(queries), learner.item_matrix()[0].shape[0])
        if known.any():
            out[torch.from_numpy(known)] = learner.scores(queries.users[known])
        if (~known).any():
            out[torch.from_numpy(~known)] = self.new_user_scores(int((~known).sum()))
        return pad_to(out, n_items)

    @torch.no_grad()
    def new_user_scores(self, n: int) -> torch.Tensor:
        m = self.learner.model
        V, b = self.learner.item_matrix()
        zero = torch.zeros(1, m.dim)
        try:
            psi = m.query(zero, zero)
        except TypeError:  # issue 4's tower also reads context: none for this query
            psi = m.query(zero, zero, None)  # type: ignore[call-arg]
        return (psi @ V.T + b).expand(n, -1)
