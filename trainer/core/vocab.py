"""Vocabulary: string ids ↔ table rows, growing while the stream runs, with bounded memory.

- Rows [0, buckets) are shared hash buckets. An id gets a row of its own only once it has been
  seen `min_count` times (counted in a count-min sketch, so one-off ids cost no memory); until
  then it shares bucket crc32(id) % buckets.
- At most `max_rows` rows. Ids unseen for `evict_after_ms` of *event* time are evicted by
  `evict(now)`; when the table is full, the least recently seen 1% make room. Freed rows are
  reused; the caller resets their weights and optimiser state (`take_fresh`, `take_freed`).
- Ids map to the same rows after a restart: the row table is part of the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.core.sketch import CountMinSketch, stable_hash
from trainer.core.state import Arrays, Meta, as_numpy, copied, refill


class Vocabulary:
    """
    >>> v = Vocabulary()
    >>> v.add(["a", "b", "a"]).tolist()
    [0, 1, 0]
    >>> v.lookup(["b", "zz"]).tolist()
    [1, -1]
    >>> w = Vocabulary(min_count=2, buckets=4)
    >>> int(w.add(["x"])[0]) < 4  # first sighting: a shared bucket row
    True
    >>> w.add(["x"]).tolist()  # the second admits "x" to a row of its own
    [4]
    """

    def __init__(
        self,
        min_count: int = 1,
        buckets: int = 0,
        max_rows: int | None = None,
        evict_after_ms: float | None = None,
        sketch_width: int = 1 << 22,
    ) -> None:
        if min_count > 1 and buckets < 1:
            raise ValueError("min_count > 1 needs at least one shared bucket row")
        self.min_count = min_count
        self.buckets = buckets
        self.max_rows = max_rows
        self.evict_after_ms = evict_after_ms
        self._index: dict[str, int] | None = {}  # id -> row; None: rebuilt when first used
        self._ids: list[str | None] = [None] * buckets
        self._free: list[int] = []
        self.last_seen = np.zeros(max(buckets, 1024), dtype=np.int64)
        self._sketch = CountMinSketch(sketch_width) if min_count > 1 else None
        self._fresh: list[int] = []
        self._freed: list[int] = []
        self.admitted = 0
        self.evicted = 0

    @property
    def _rows(self) -> dict[str, int]:
        """id -> row of admitted ids (built lazily after a load: a twin copied at a checkpoint
        never pays for it on the training thread)."""
        if self._index is None:
            self._index = {i: r for r, i in enumerate(self._ids) if i is not None}
        return self._index

    # ---- sizes -----------------------------------------------------------------------------
    @property
    def rows_used(self) -> int:
        """Rows in use or free for reuse, buckets included: the tables' needed size."""
        return len(self._ids)

    def __len__(self) -> int:
        """Ids with a row of their own."""
        return len(self._rows)

    # ---- mapping ---------------------------------------------------------------------------
    def add(self, ids: Sequence[str], ts: np.ndarray | None = None) -> np.ndarray:
        """Rows of `ids` (bucket rows for ids not admitted yet), admitting those that reached
        `min_count`; marks them seen at `ts` (event time, ms).

        Within one call an id never gets a row another id of the call has, except a shared
        bucket: making room at the cap evicts only ids this call does not name. When every
        admitted id is named by the call, a new id waits in its bucket (or, with no buckets,
        the table grows past the cap by this call's new ids).
        """
        rows = self.lookup(ids)
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            new_ids = [ids[k] for k in missing.tolist()]
            if self._sketch is not None:
                counts = self._sketch.add(new_ids)
                admit = counts >= self.min_count
                pending = missing[~admit]
                rows[pending] = self._bucket([ids[k] for k in pending.tolist()])
                missing = missing[admit]
            named = set(rows[rows >= self.buckets].tolist())  # rows this call already uses
            for k in missing.tolist():
                row = self._admit(ids[k], named)
                rows[k] = row if row >= 0 else self._bucket([ids[k]])[0]
                named.add(int(rows[k]))
        if ts is not None:
            np.maximum.at(self.last_seen, rows, np.asarray(ts, dtype=np.int64))
        return rows

    def _bucket(self, ids: Sequence[str]) -> np.ndarray:
        return (stable_hash(ids) % np.uint64(self.buckets)).astype(np.int64)

    def _admit(self, id_: str, named: set[int]) -> int:
        """The row of a new id (-1: none free, wait in a bucket); never one of `named`."""
        row = self._rows.get(id_)
        if row is not None:  # admitted earlier in this same batch
            return row
        if not self._free and self.max_rows is not None and len(self._ids) >= self.max_rows:
            self._evict_oldest(max(1, (self.max_rows - self.buckets) // 100), named)
            if not self._free and self.buckets:
                return -1
        if self._free:
            row = self._free.pop()
            self._ids[row] = id_
        else:
            row = len(self._ids)
            self._ids.append(id_)
            if row >= len(self.last_seen):
                grown = np.zeros(2 * len(self.last_seen), dtype=np.int64)
                grown[: len(self.last_seen)] = self.last_seen
                self.last_seen = grown
        self._rows[id_] = row
        self.last_seen[row] = 0
        self._fresh.append(row)
        self.admitted += 1
        return row

    def lookup(self, ids: Sequence[str], pending_to_bucket: bool = False) -> np.ndarray:
        """Rows of `ids`; -1 where an id has no row (or its bucket, if `pending_to_bucket`)."""
        get = self._rows.get
        rows = np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if pending_to_bucket and self.buckets:
            miss = np.flatnonzero(rows < 0)
            rows[miss] = self._bucket([ids[k] for k in miss.tolist()])
        return rows

    def row(self, id_: str) -> int | None:
        return self._rows.get(id_)

    def id_of(self, row: int) -> str | None:
        return self._ids[row]

    def ids(self) -> list[str | None]:
        """The id of every row in row order (None for buckets and free rows): a copy."""
        return list(self._ids)

    def admitted_rows(self) -> np.ndarray:
        return np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))

    # ---- eviction --------------------------------------------------------------------------
    def evict(self, now_ms: int) -> np.ndarray:
        """Free the rows of ids unseen for `evict_after_ms` of event time; returns them."""
        if self.evict_after_ms is None or not self._rows:
            return np.empty(0, np.int64)
        admitted = self.admitted_rows()
        stale = admitted[self.last_seen[admitted] < now_ms - self.evict_after_ms]
        self._free_rows(stale)
        return stale

    def _evict_oldest(self, k: int, keep: set[int]) -> None:
        """Free the `k` least recently seen rows, never one in `keep`."""
        admitted = self.admitted_rows()
        if keep:
            admitted = admitted[~np.isin(admitted, np.fromiter(keep, np.int64, len(keep)))]
        k = min(k, len(admitted))
        if k == 0:
            return
        oldest = admitted[np.argpartition(self.last_seen[admitted], k - 1)[:k]]
        self._free_rows(oldest)

    def _free_rows(self, rows: np.ndarray) -> None:
        for r in rows.tolist():
            id_ = self._ids[r]
            if id_ is not None:
                del self._rows[id_]
                self._ids[r] = None
                self._free.append(r)
                self._freed.append(r)
        self.evicted += len(rows)

    def take_fresh(self) -> np.ndarray:
        """Rows admitted (new or reused) since the last call: the caller resets them."""
        out, self._fresh = np.array(self._fresh, dtype=np.int64), []
        return out

    def take_freed(self) -> np.ndarray:
        """Rows evicted since the last call."""
        out, self._freed = np.array(self._freed, dtype=np.int64), []
        return out

    # ---- state -----------------------------------------------------------------------------
    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        arrays: Arrays = {"last_seen": copied(self.last_seen[: len(self._ids)], copy)}
        if self._sketch is not None:
            arrays["sketch"] = copied(self._sketch.table, copy)
        meta = {
            "ids": list(self._ids),
            "free": list(self._free),
            "admitted": self.admitted,
            "evicted": self.evicted,
            "sketch_increments": self._sketch.increments if self._sketch else 0,
        }
        return arrays, meta

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        self._ids = list(meta["ids"])
        self._index = None
        self._free = list(meta["free"])
        self.admitted, self.evicted = int(meta["admitted"]), int(meta["evicted"])
        self.last_seen = refill(self.last_seen, arrays["last_seen"])
        if self._sketch is not None and "sketch" in arrays:
            np.copyto(self._sketch.table, as_numpy(arrays["sketch"]))
            self._sketch.increments = int(meta["sketch_increments"])
        self._fresh, self._freed = [], []
