"""Per-user recent items: a bounded ring of the last L item rows per user row."""

from __future__ import annotations

import numpy as np

EMPTY = -1


class UserHistory:
    """`get(users)` → (B, L) item rows (EMPTY where unfilled); `push(users, items)` in event order.

    >>> h = UserHistory(length=2)
    >>> h.push(np.array([0, 0, 0]), np.array([5, 6, 7]))
    >>> sorted(h.get(np.array([0]))[0].tolist())
    [6, 7]
    """

    def __init__(self, length: int, capacity: int = 1024) -> None:
        if length < 0:
            raise ValueError(f"history length must be >= 0, got {length}")
        self.length = length
        self.items = np.full((capacity, length), EMPTY, dtype=np.int64)
        self.next = np.zeros(capacity, dtype=np.int64)  # write position, = items pushed so far

    def ensure(self, rows: int) -> None:
        cap = self.items.shape[0]
        if rows > cap:
            new_cap = max(rows, 2 * cap)
            items = np.full((new_cap, self.length), EMPTY, dtype=np.int64)
            items[:cap] = self.items
            nxt = np.zeros(new_cap, dtype=np.int64)
            nxt[:cap] = self.next
            self.items, self.next = items, nxt

    def get(self, users: np.ndarray) -> np.ndarray:
        return self.items[users]

    def push(self, users: np.ndarray, items: np.ndarray) -> None:
        """Append each event's item to its user's ring; later events of a user win."""
        if self.length == 0 or len(users) == 0:
            return
        self.ensure(int(users.max()) + 1)
        order = np.argsort(users, kind="stable")
        su = users[order]
        starts = np.r_[0, np.flatnonzero(su[1:] != su[:-1]) + 1]
        counts = np.diff(np.r_[starts, len(su)])
        rank = np.arange(len(su)) - np.repeat(starts, counts)
        slot = (self.next[su] + rank) % self.length
        self.items[su, slot] = items[order]  # duplicates: numpy keeps the last write, the newest
        self.next[su[starts]] += counts

    def reset(self, users: np.ndarray) -> None:
        self.items[users] = EMPTY
        self.next[users] = 0

    def arrays(self, rows: int) -> dict[str, np.ndarray]:
        return {"items": self.items[:rows].copy(), "next": self.next[:rows].copy()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        items = arrays["items"]
        if items.shape[1] != self.length:
            raise ValueError(f"checkpoint history length {items.shape[1]} != setting {self.length}")
        self.ensure(items.shape[0])
        self.items[: items.shape[0]] = items
        self.next[: items.shape[0]] = arrays["next"]
