"""Answers from one version: an item's vector through the version's chain (two round trips),
and top-k from a reader's copy, exact or from its index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from store.cache import Copy
from store.errors import StoreError
from store.layout import Layout
from store.loading import Meta, Vanished
from store.table import check_k

if TYPE_CHECKING:
    import redis

Recs = list[dict[str, str | float]]


def item_vectors(
    client: redis.Redis, layout: Layout, meta: Meta, ids: list[str]
) -> dict[str, np.ndarray]:
    """Each id's row in the first version of the chain that names it, then its bytes."""
    from store.reader import decode_vector  # the reader's one check of a vector's length

    if not ids:
        return {}
    v, L = meta.version, layout
    pipe = client.pipeline(transaction=False)
    for c in meta.chain:
        pipe.hmget(L.item(c), ids)
    found: dict[str, tuple[int, int]] = {}
    for c, rows in zip(meta.chain, pipe.execute(), strict=True):
        for i, row in zip(ids, rows, strict=True):
            if row is not None and i not in found:
                if row and not row.isdigit():
                    raise StoreError(f"{L.item(c)}[{i!r}] is not a row number: republish")
                found[i] = (c, int(row) if row else -1)
    width, R = 4 * meta.dim, meta.chunk_rows
    live = [(i, c, r) for i, (c, r) in found.items() if r >= 0]
    pipe = client.pipeline(transaction=True)
    for _, c, r in live:
        pipe.getrange(L.matrix(c, r // R), (r % R) * width, (r % R + 1) * width - 1)
    pipe.exists(L.meta(v))
    *blobs, alive = pipe.execute()
    if not alive:
        raise Vanished(v)
    return {
        i: decode_vector(b, meta.dim, f"{L.matrix(c, r // R)}[row {r}]")
        for (i, c, r), b in zip(live, blobs, strict=True)
    }


def top_k(copy: Copy, vector: np.ndarray, k: int, exclude: list[str | int], exact: bool) -> Recs:
    """Exact top-k from the copy's table, or approximate from its index."""
    table = copy.table
    if exact:
        return table.top_k(vector, k, exclude)
    if copy.ivf is None:
        raise StoreError(
            f"version {copy.version} has no approximate index (published with --index none, "
            "too few items for --index auto, or without faiss-cpu): use exact=True"
        )
    check_k(k)
    q = table.query(vector)
    masked = np.asarray(table.excluded_rows(exclude), np.int64) if exclude else None
    rows, scores = copy.ivf.top_k(table.matrix, q, int(k), copy.meta.nprobe, masked)
    return table.answer(rows, scores)
