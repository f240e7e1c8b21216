"""A batch as the learner reads it: columns of ids, times, weights and contexts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EventColumns:
    """A batch as columns: what the learner needs of each event."""

    users: list[str]
    items: list[str]
    ts: np.ndarray  # int64 epoch ms
    weights: np.ndarray  # float32
    contexts: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.users)

    def context_list(self) -> list[dict[str, Any]]:
        return self.contexts if self.contexts is not None else [{}] * len(self.users)

    def take(self, keep: np.ndarray) -> EventColumns:
        """The events where the boolean mask `keep` is set."""
        idx = np.flatnonzero(keep).tolist()
        ctx = None if self.contexts is None else [self.contexts[k] for k in idx]
        return EventColumns(
            [self.users[k] for k in idx],
            [self.items[k] for k in idx],
            self.ts[keep],
            self.weights[keep],
            ctx,
        )

    @classmethod
    def concat(cls, parts: list[EventColumns]) -> EventColumns:
        """The events of `parts`, one after another."""
        if len(parts) == 1:
            return parts[0]
        with_ctx = any(p.contexts is not None for p in parts)
        return cls(
            [x for p in parts for x in p.users],
            [x for p in parts for x in p.items],
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.weights for p in parts]),
            [x for p in parts for x in p.context_list()] if with_ctx else None,
        )

    @classmethod
    def from_events(cls, events: Any) -> EventColumns:
        """From any sequence of objects with user, item, ts, weight and context attributes."""
        return cls(
            users=[e.user for e in events],
            items=[e.item for e in events],
            ts=np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events)),
            weights=np.fromiter((e.weight for e in events), dtype=np.float32, count=len(events)),
            contexts=[e.context for e in events],
        )


@dataclass(frozen=True)
class StepStats:
    """What one `Learner.learn` did."""

    events: int
    loss: float
    negatives: int  # per query, all strategies
    evaluated: int = 0  # queries scored before learning
    timings_ms: dict[str, float] = field(default_factory=dict)  # eval, sample, step
