"""What every benchmarked model offers the harness, and the softmax model behind it.

A model learns batches of integer events and scores queries over the catalogue seen so far:
`scores(batch, n_items)` → (B, n_items) float tensor, one row per query, for item ids
0..n_items-1 (ids are first-appearance order, see `bench.streams`). The harness turns those
scores into ranks with `trainer.core.evaluation.ranks_of`, the same code for every model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from trainer.core.features import parse_fields
from trainer.core.learner import EventColumns, Learner
from trainer.core.settings import ModelSettings


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


CONTEXT_FIELD = "mode"  # the contextual stream's context value, as the event's context field


def contexts(batch: Batch) -> list[dict[str, object]] | None:
    if batch.context is None:
        return None
    return [{CONTEXT_FIELD: int(c)} for c in batch.context.tolist()]


def columns(batch: Batch, with_context: bool = False) -> EventColumns:
    """A batch as the learner's EventColumns: users "<n>", items "i<n>", unit weights."""
    return EventColumns(
        users=str_ids(batch.users),
        items=str_ids(batch.items, "i"),
        ts=batch.ts.astype(np.int64),
        weights=np.ones(len(batch), np.float32),
        contexts=contexts(batch) if with_context else None,
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
    """The project's model (trainer.core.learner.Learner) behind the benchmark protocol.

    Queries are scored as the trainer would serve them (`Learner.scores_for`): a user it has
    not admitted yet gets ψ from its pending history and context, without an embedding; an
    item it has not admitted scores -inf (it could not be recommended).
    """

    def __init__(self, name: str, settings: ModelSettings, context: bool = False) -> None:
        self.name = name
        self.context = context
        if context:
            from bench.capabilities import context_features

            reason = context_features()
            if reason:
                raise Unsupported(reason)
            settings = dataclasses.replace(settings, context_fields=parse_fields(CONTEXT_FIELD))
        self.settings = settings
        self.learner = Learner(settings)

    def learn(self, batch: Batch) -> None:
        self.learner.learn(columns(batch, self.context))

    @torch.no_grad()
    def scores(self, queries: Batch, n_items: int) -> torch.Tensor:
        ctx = contexts(queries) if self.context else None
        return self._by_item(self.learner.scoring.scores_for(str_ids(queries.users), ctx), n_items)

    @torch.no_grad()
    def scores_from_items(self, histories: list[np.ndarray], n_items: int) -> torch.Tensor:
        """Scores for users known only by these items, oldest first: ψ from the items alone,
        as `store.Reader.recommend_for` serves a user the model has no vector for."""
        scoring = self.learner.scoring
        psi = scoring.query_recent([str_ids(h, "i") for h in histories])
        return self._by_item(scoring.score_all(psi), n_items)

    def _by_item(self, by_row: torch.Tensor, n_items: int) -> torch.Tensor:
        """Scores by learner row → by item id 0..n_items-1 (-inf: not an admitted item)."""
        learner = self.learner
        rows = learner.items.lookup(str_ids(np.arange(n_items), "i"))
        out = by_row.new_full((by_row.shape[0], n_items), -torch.inf)
        have = np.flatnonzero(rows >= 0)
        out[:, torch.from_numpy(have)] = by_row[:, torch.from_numpy(rows[have])]
        return out
