"""Precomputed top-N lists: a user's best N items as JSON, read by any client with one HGET.

The writer computes them on the version's own table (what `Reader.recommend` scores, so the
scores match a reader's to float precision), for the users active since the previous version;
the other users' lists are carried over with the hash (`COPY`), as their vectors are.

>>> encode([{"item": "i7", "score": 2.5}])
b'[{"item":"i7","score":2.5}]'
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import numpy as np

from store.cache import Copy
from store.draft import Draft
from store.layout import chunk_bounds
from store.loading import Meta, Part
from store.table import Table, top_rows

_BATCH = 32  # users scored per matrix product (32 x 1M float32 = 128 MB of scores)


_JSON = msgspec.json.Encoder()  # ~10x json.dumps: the lists are most of a top-N publish's work


def encode(recs: list[dict[str, str | float]]) -> bytes:
    return _JSON.encode(recs)


def lists(copy: Copy, users: np.ndarray, n: int, exact: bool) -> Iterator[bytes]:
    """Each user's top-n as JSON, in order: from the index when the copy has one and not
    `exact`, else by a batched exact scan."""
    table = copy.table
    if copy.ivf is not None and not exact:
        for lo in range(0, len(users), 1024):
            found = copy.ivf.top_k_many(
                table.matrix, users[lo : lo + 1024], n, copy.meta.nprobe, table.holes
            )
            for rows, scores in found:
                yield encode(table.answer(rows, scores))
        return
    for lo in range(0, len(users), _BATCH):
        scores = users[lo : lo + _BATCH] @ table.matrix.T
        if len(table.holes):
            scores[:, table.holes] = -np.inf
        for row in scores:
            best = top_rows(row, min(n, len(row)))
            best = best[row[best] > -np.inf]
            yield encode(table.answer(best, row[best]))


def moved(copy: Copy | None, d: Draft, chunk_rows: int) -> Copy:
    """The writer's copy of the table moved to the draft's version: a new one for a full
    version (or without one), else the delta applied in place, as a reader does."""
    snap = d.snap
    meta = Meta(
        version=snap.version,
        dim=snap.dim,
        slots=d.size,
        rows=len(d.ids),
        chunk_rows=chunk_rows,
        chunks=len(chunk_bounds(len(d.ids), chunk_rows)),
        chain=d.chain,
        index="ivf" if d.lists is not None else "",
        nprobe=d.nprobe,
        fields={},
    )
    if copy is not None and not d.full:
        copy.apply(Part(meta, d.vectors, d.ids, d.slots, d.lists, d.removed, None))
        return copy
    buffer = np.empty((d.size + d.size // 16 + 1024, snap.dim), np.float32)
    buffer[: d.size] = d.vectors
    table = Table(snap.version, list(d.ids), buffer[: d.size])
    table._buffer = buffer
    return Copy(table, meta, None if d.lists is None else d.lists.copy(), d.index)
