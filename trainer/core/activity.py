"""What a user's recent activity says about its next event: the query's activity features.

Three numbers per query, beside the user's embedding, history and context:
``log(1 + hours since the user's previous event)`` (0 when unknown), whether that is known, and
``log(1 + events the user had)``. A user in a session (minutes since the last item, a handful
of items) picks differently from one coming back after weeks (who follows what is popular now):
with these, the query tower can tell them apart (YouTube-DNN feeds such signals too). In
training each event sees them as of its own time, its user's earlier events of the batch
included; served, a published user vector sees them as of the snapshot, and a user known only
by recent items has its count and no known gap (`store.tower.QueryTower` does the same).

    >>> a = UserActivity()
    >>> a.record(np.array([0]), np.array([1_000]))  # user row 0: one event, at t = 1 s
    >>> x = a.in_sequence(np.array([0, 0]), np.array([3_601_000, 3_601_000]))  # an hour later
    >>> x.astype(float).round(2).tolist()
    [[0.69, 1.0, 0.69], [0.0, 1.0, 1.1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.core.history import group_by_user
from trainer.core.state import Arrays, Meta, as_numpy, copied, refill

FEATURES = 3
_HOUR_MS = 3_600_000.0


def features(gap_ms: np.ndarray, known: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(n, 3) float32: [log1p(gap hours) where known else 0, known, log1p(count)]."""
    gap = np.where(known, np.log1p(np.maximum(gap_ms, 0) / _HOUR_MS), 0.0)
    return np.stack([gap, known.astype(np.float64), np.log1p(count)], 1).astype(np.float32)


def for_recent(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """A user known only by recent items: their number, no known gap."""
    n = np.asarray(counts, dtype=np.float64)
    return features(np.zeros(len(n)), np.zeros(len(n), bool), n)


class UserActivity:
    """Per user row: the time of its last event (0: none yet) and how many it had."""

    def __init__(self, capacity: int = 1024) -> None:
        self.last = np.zeros(capacity, dtype=np.int64)
        self.count = np.zeros(capacity, dtype=np.float64)
        self.used = 0

    def ensure(self, rows: int) -> None:
        """User rows [0, `rows`) are in use."""
        if rows > len(self.last):
            grow = max(rows, 2 * len(self.last)) - len(self.last)
            self.last = np.concatenate([self.last, np.zeros(grow, np.int64)])
            self.count = np.concatenate([self.count, np.zeros(grow)])
        self.used = max(self.used, rows)

    def reset(self, rows: np.ndarray) -> None:
        """Rows of new (or reused) users: no activity yet."""
        self.last[rows] = 0
        self.count[rows] = 0.0

    def in_sequence(
        self,
        users: np.ndarray,
        ts: np.ndarray,
        ids: Sequence[str] | None = None,
        buckets: int = 0,
        pending: Sequence[int] | None = None,
    ) -> np.ndarray:
        """The features of a batch's events, each as of its own time (its user's earlier events
        of the batch counted). A user without a row of its own has no known gap before the
        batch and `pending[k]` events so far (the items its pending history holds)."""
        n = len(users)
        order, start = group_by_user(users, ids, buckets)
        rank = np.arange(n) - start
        u, t = users[order], ts[order]
        own = u >= buckets
        before = np.where(own, self.last[np.where(own, u, 0)], 0)
        prev = np.where(rank > 0, t[np.maximum(np.arange(n) - 1, 0)], before)
        so_far = np.zeros(n) if pending is None else np.asarray(pending, np.float64)[order]
        count = np.where(own, self.count[np.where(own, u, 0)], so_far) + rank
        out = np.empty((n, FEATURES), np.float32)
        out[order] = features(t - prev, prev > 0, count)
        return out

    def now(
        self, rows: np.ndarray, own: np.ndarray, now_ms: int, pending: Sequence[int]
    ) -> np.ndarray:
        """The features of users about to be served at `now_ms` (their next event); a user
        without a row of its own (`~own`) has `pending[k]` events and no known gap."""
        rows = np.where(own, rows, 0)
        last = np.where(own, self.last[rows], 0)
        count = np.where(own, self.count[rows], np.asarray(pending, np.float64))
        return features(now_ms - last, last > 0, count)

    def start(self, rows: np.ndarray, counts: Sequence[int]) -> None:
        """Users just given rows of their own, with the events they had while pending."""
        self.last[rows] = 0
        self.count[rows] = np.asarray(counts, np.float64)

    def record(self, users: np.ndarray, ts: np.ndarray) -> None:
        """After a batch: the events of users with rows of their own."""
        np.maximum.at(self.last, users, ts)
        np.add.at(self.count, users, 1.0)

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        arrays: Arrays = {
            "last": copied(self.last[: self.used], copy),
            "count": copied(self.count[: self.used], copy),
        }
        return arrays, {"used": self.used}

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        if not meta:  # recstream 0.1 kept none: activity starts unknown
            return
        self.last = refill(self.last, as_numpy(arrays["last"]))
        self.count = refill(self.count, as_numpy(arrays["count"]))
        self.used = int(meta["used"])
