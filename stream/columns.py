"""A batch of events as columns: what crosses a process boundary and reaches the learner.

A source decodes records into `Interaction`s; `Columns.of` turns a batch of them into one list
or array per field, so the learner takes them as they are and a source in another process
(`stream.process`) sends a few pickled lists instead of a thousand objects.

    >>> from stream.event import Interaction
    >>> c = Columns.of([Interaction("u1", "i1", 5), Interaction("u2", "i9", 7, weight=2.0)])
    >>> c.users, c.ts.tolist(), c.weights.tolist(), len(c)
    (['u1', 'u2'], [5, 7], [1.0, 2.0], 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.event import Interaction


@dataclass
class Columns:
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # epoch ms
    weights: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    contexts: list[dict[str, Any]] | None = None  # None: no event has one
    event_ids: list[str | None] | None = None  # None: no event has one

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def of(cls, events: Sequence[Interaction]) -> Columns:
        n = len(events)
        contexts = [e.context for e in events]
        event_ids = [e.event_id for e in events]
        return cls(
            users=[e.user for e in events],
            items=[e.item for e in events],
            ts=np.fromiter((e.ts for e in events), dtype=np.int64, count=n),
            weights=np.fromiter((e.weight for e in events), dtype=np.float32, count=n),
            contexts=contexts if any(contexts) else None,
            event_ids=event_ids if any(e is not None for e in event_ids) else None,
        )
