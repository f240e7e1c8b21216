"""Reads a written version back and lists how it differs from its draft.

The chunks (rows, ids, slots, lists), the removed slots and the centroids are compared byte for
byte (they are what readers load; comparing is cheaper than hashing them again); the per-id
hashes by their sizes and a sample of values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from store.draft import Draft
from store.layout import Layout
from store.loading import read_chunks
from store.put import UserBase, own_chunks

if TYPE_CHECKING:
    import redis

_SAMPLE = 256  # per-id values read back per hash


def differences(
    client: redis.Redis, layout: Layout, d: Draft, chunk_rows: int, users: UserBase | None
) -> list[str]:
    """What Redis holds differently from the draft under its version; empty if nothing."""
    return _chunks(client, layout, d, chunk_rows) + _hashes(client, layout, d, users)


def _chunks(client: redis.Redis, layout: Layout, d: Draft, chunk_rows: int) -> list[str]:
    v = d.snap.version
    want = own_chunks(d, chunk_rows)
    kinds = tuple(want)
    problems = []
    for c, blobs in read_chunks(client, layout, v, len(want["ids"]), kinds):
        for kind, blob in zip(kinds, blobs, strict=True):
            if blob != bytes(want[kind][c]):
                problems.append(f"{getattr(layout, kind)(v, c)} differs from the snapshot")
    pipe = client.pipeline(transaction=False)
    pipe.get(layout.removed(v))
    pipe.get(layout.centroids(v))
    removed, centroids = pipe.execute()
    if not d.full and removed != d.removed.astype("<i4").tobytes():
        problems.append(f"{layout.removed(v)} differs from the draft")
    want_centroids = None if d.centroids is None else np.ascontiguousarray(d.centroids, "<f4")
    if d.full and want_centroids is not None and centroids != want_centroids.tobytes():
        problems.append(f"{layout.centroids(v)} differs from the draft")
    return problems


def _hashes(client: redis.Redis, layout: Layout, d: Draft, users: UserBase | None) -> list[str]:
    snap, v = d.snap, d.snap.version
    rng = np.random.default_rng(v)
    item_ids = [*d.ids, *d.removed_ids]
    n_rows = len(d.ids)
    user_rows = np.arange(len(snap.user_ids)) if users is None else users.changed
    user_ids = [snap.user_ids[r] for r in user_rows.tolist()]
    vectors = snap.user_vectors
    checks: list[tuple[str, list[str], Callable[[int], bytes], int | None]] = [
        (layout.item(v), item_ids, lambda r: str(r).encode() if r < n_rows else b"", len(item_ids)),
        (layout.user(v), user_ids, lambda r: vectors[user_rows[r]].tobytes(),
         None if users else len(snap.user_ids)),
    ]  # fmt: skip
    pipe = client.pipeline(transaction=False)
    samples = []
    for key, ids, _value, _ in checks:
        n = len(ids)
        rows = sorted({0, n - 1, *rng.integers(0, n, _SAMPLE).tolist()}) if n else []
        samples.append(rows)
        pipe.hlen(key)
        pipe.hmget(key, [ids[r] for r in rows] or ["-"])  # HMGET needs a field
    replies = pipe.execute()
    problems = []
    for (key, ids, value, expected), rows, n, blobs in zip(
        checks, samples, replies[0::2], replies[1::2], strict=True
    ):
        if expected is not None and n != expected:
            problems.append(f"{key} has {n} fields, expected {expected}")
        elif expected is None and n < len(snap.user_ids):  # copied users + rewritten ones
            problems.append(f"{key} has {n} fields, fewer than the {len(snap.user_ids)} users")
        bad = [ids[r] for r, b in zip(rows, blobs, strict=False) if b != value(r)]
        if bad:
            problems.append(f"{key} differs from the snapshot at {bad[:3]!r}")
    return problems
