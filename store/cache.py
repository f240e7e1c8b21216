"""A reader's copy of one version: its table (and approximate index), kept current.

`Cache.view(v)` yields the copy, read-locked, so that a call sees one whole version. Moving to
version v: when the copy's version is in v's chain, only the deltas after it are fetched (without
the lock) and applied in place under a short write lock — rows overwritten, the index's changed
rows moved — instead of reloading; otherwise (a compaction, a first load) the chain is loaded
into a new copy while calls go on with the old one, which is then swapped in. One thread loads;
calls in other threads meanwhile answer wholly from the copy's (previous) version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from store.ivf import IVF
from store.layout import Layout
from store.loading import Meta, Part, Vanished, read_meta, read_part
from store.table import Table

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


class RWLock:
    """Many readers or one writer; a waiting writer holds off new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass
class Copy:
    """One version in memory: table, IVF lists per slot (-1: none), index, meta."""

    table: Table
    meta: Meta
    lists: np.ndarray | None = None
    ivf: IVF | None = None

    @property
    def version(self) -> int:
        return self.table.version

    def apply(self, part: Part) -> None:
        """Move to `part`'s version (a delta of this one's): in place."""
        t = self.table
        changed = part.slots[part.slots < len(t.ids)]
        if self.ivf is not None:
            gone = np.concatenate([part.removed, changed])
            self.ivf.remove(gone[np.array([t.ids[s] is not None for s in gone.tolist()], bool)])
        t.apply(part.meta.version, part.removed, part.slots, part.ids, part.vectors)
        if self.lists is not None and part.lists is not None:
            if len(self.lists) < len(t.ids):
                grown = np.full(len(t.ids) + len(t.ids) // 16, -1, np.int32)
                grown[: len(self.lists)] = self.lists
                self.lists = grown
            self.lists[part.removed] = -1
            self.lists[part.slots] = part.lists
        if self.ivf is not None and part.lists is not None:
            self.ivf.add(part.vectors, part.lists, part.slots)
            live = part.slots if not len(part.removed) else np.setdiff1d(part.slots, part.removed)
            gone = np.setdiff1d(part.removed, part.slots)
            self.ivf.head = np.setdiff1d(self.ivf.head, gone)
            self.ivf.set_head(t.matrix, np.union1d(self.ivf.head, live), changed=live)
        self.meta = part.meta


def load(client: redis.Redis, layout: Layout, meta: Meta) -> Copy:
    """A new copy of `meta`'s version: its full version, then each delta, oldest first."""
    start = time.perf_counter()
    full = meta if meta.full else read_meta(client, layout, meta.chain[-1])
    room = meta.slots + meta.slots // 16 + 1024
    buffer = np.empty((max(room, full.rows), full.dim), np.float32)
    part = read_part(client, layout, full, out=buffer)
    table = Table(full.version, list[str | None](part.ids), buffer[: full.rows])
    table._buffer = buffer
    copy = Copy(table, full, part.lists)
    deltas = [read_part(client, layout, read_meta(client, layout, v)) for v in meta.chain[-2::-1]]
    for delta in deltas:
        copy.apply(delta)
    if meta.index and part.centroids is not None and copy.lists is not None:
        live = np.flatnonzero(copy.lists[: len(table.ids)] >= 0)
        copy.ivf = IVF(part.centroids)
        copy.ivf.add(table.matrix[live], copy.lists[live], live)
        copy.ivf.set_head(table.matrix, live)
    copy.meta = meta
    log.info(
        "loaded version %d of %s (%d deltas): %d items x %d in %.2f s",
        meta.version,
        layout.namespace,
        len(deltas),
        table.items,
        table.dim,
        time.perf_counter() - start,
    )
    return copy


class Cache:
    """The copy one Reader keeps; thread-safe."""

    def __init__(self, client: redis.Redis, layout: Layout) -> None:
        self.client, self.layout = client, layout
        self.copy: Copy | None = None
        self.lock = RWLock()
        self._loading = threading.Lock()
        self.switches: list[tuple[int, str, float]] = []  # (version, "delta"/"load", seconds)

    @contextmanager
    def view(self, version: int, wait: bool = False) -> Iterator[Copy]:
        """The copy, read-locked, brought to `version` first; while another thread does that,
        the copy as it is (its previous version) unless `wait` or there is none yet. Callers
        read the answer's version from the copy."""
        copy = self.copy
        if copy is None or copy.version != version:
            if copy is None or wait:
                with self._loading:
                    self._advance(version)
            elif self._loading.acquire(blocking=False):
                try:
                    self._advance(version)
                finally:
                    self._loading.release()
        with self.lock.read():
            assert self.copy is not None
            yield self.copy

    def _advance(self, version: int) -> None:
        """Bring the copy to `version` (the loading lock held)."""
        copy = self.copy
        if copy is not None and copy.version == version:
            return
        start = time.perf_counter()
        meta = read_meta(self.client, self.layout, version)
        if copy is not None and copy.version in meta.chain[1:]:
            after = meta.chain[: meta.chain.index(copy.version)][::-1]
            parts = [read_part(self.client, self.layout, read_meta(self.client, self.layout, v))
                     for v in after]  # fmt: skip
            with self.lock.write():
                try:
                    for part in parts:
                        copy.apply(part)
                except BaseException:
                    self.copy = None  # half applied: the next call loads afresh
                    raise
                copy.meta = meta
            self.switches.append((version, "delta", time.perf_counter() - start))
            return
        new = load(self.client, self.layout, meta)
        with self.lock.write():
            self.copy = new
        self.switches.append((version, "load", time.perf_counter() - start))


__all__ = ["Cache", "Copy", "RWLock", "Vanished", "load"]
