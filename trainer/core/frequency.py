"""How often each item is a positive lately: the probability q of an in-batch negative.

In-batch negatives are the batch's positives, so an item's q is its share of the positive
stream *now*. Yi et al. (RecSys 2019) estimate it per item from the gap between its
occurrences, in steps; this keeps the same estimate as a share of counts decayed per event
(arrival order, not event time): a burst trending faster than the popularity half-life is
seen at once, and a record that arrives days late weighs what a timely one does (a decay in
event time would shrink its count to nothing and inflate its logit for every other query).
Every positive counts, admitted or not, so the shares are of the whole positive stream. The
batch is counted before its q is read: an item's first occurrence has q ≈ 1/window, not 0.

    >>> f = InBatchFrequency(half_life=1000)
    >>> f.update(np.array([3, 3, 5, 3]))
    >>> f.share(np.array([3, 5])).round(2).tolist()
    [0.75, 0.25]
"""

from __future__ import annotations

import math

import numpy as np

from trainer.core.popularity import DecayedCounts
from trainer.core.state import Arrays, Meta

HALF_LIFE_EVENTS = 65_536  # about 64 default batches: short enough to follow a trend


class InBatchFrequency:
    def __init__(self, half_life: int = HALF_LIFE_EVENTS) -> None:
        self.counts = DecayedCounts(half_life)
        self.seen = 0  # positives counted so far: the clock of the decay
        # one occurrence in a window: the least an item seen at all can have
        self.floor = math.log(2) / half_life / 4

    def update(self, rows: np.ndarray) -> None:
        """Count one batch's positives (every occurrence)."""
        if len(rows):
            self.counts.add(rows, np.arange(self.seen, self.seen + len(rows), dtype=np.float64))
            self.seen += len(rows)

    def share(self, rows: np.ndarray) -> np.ndarray:
        """q of each row: its share of the recent positives (at least a floor)."""
        return np.maximum(self.counts.share(rows), self.floor)

    def clear(self, rows: np.ndarray) -> None:
        """Rows freed or reused: their counts are another item's no longer."""
        self.counts.clear(rows)

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        arrays, meta = self.counts.state(copy)
        return arrays, {**meta, "seen": self.seen}

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        if not meta:  # recstream 0.1 kept none: start counting afresh
            return
        self.counts.load_state(arrays, meta)
        self.seen = int(meta["seen"])
