"""Reads a written version back and lists how it differs from its snapshot.

The chunks are compared byte for byte (they are what readers load for top-k; comparing is
cheaper than hashing them again); the per-id hashes by their sizes and a sample of values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import numpy as np

from store.layout import Layout, chunk_bounds
from store.reader import read_chunks
from store.snapshot import Snapshot

if TYPE_CHECKING:
    import redis

_SAMPLE = 256  # per-id values read back per hash


def differences(
    client: redis.Redis,
    layout: Layout,
    snap: Snapshot,
    chunk_rows: int,
    changed_users: np.ndarray | None = None,
) -> list[str]:
    """What Redis holds differently from `snap` under its version; empty if nothing.

    With `changed_users` (rows), the user hash was copied from a base version and only those
    users rewritten: it must hold at least the snapshot's users, and those rows must match."""
    return _chunks(client, layout, snap, chunk_rows) + _hashes(client, layout, snap, changed_users)


def per_id_hashes(
    snap: Snapshot, layout: Layout, changed_users: np.ndarray | None = None
) -> list[tuple[str, list[str], np.ndarray]]:
    """(key, ids, vectors) of the per-id hashes to write for the snapshot's version."""
    v = snap.version
    users: tuple[list[str], np.ndarray] = (snap.user_ids, snap.user_vectors)
    if changed_users is not None:
        users = (
            [snap.user_ids[r] for r in changed_users.tolist()],
            snap.user_vectors[changed_users],
        )
    return [
        (layout.item(v), snap.item_ids, snap.item_vectors),
        (layout.user(v), *users),
    ]


def _chunks(client: redis.Redis, layout: Layout, snap: Snapshot, chunk_rows: int) -> list[str]:
    """The chunks, byte for byte: they are what readers load for top-k."""
    v = snap.version
    matrix = snap.item_vectors.reshape(-1).view(np.uint8).data
    width = 4 * snap.dim
    bounds = chunk_bounds(len(snap.item_ids), chunk_rows)
    problems = []
    for c, blob, id_blob in read_chunks(client, layout, v, len(bounds)):
        lo, hi = bounds[c]
        if blob != bytes(matrix[lo * width : hi * width]):
            problems.append(f"{layout.matrix(v, c)} differs from the snapshot")
        if id_blob != msgspec.msgpack.encode(snap.item_ids[lo:hi]):
            problems.append(f"{layout.ids(v, c)} differs from the snapshot")
    return problems


def _hashes(
    client: redis.Redis, layout: Layout, snap: Snapshot, changed_users: np.ndarray | None
) -> list[str]:
    """The per-id hashes: their sizes, and a sample of the values written."""
    rng = np.random.default_rng(snap.version)
    pipe = client.pipeline(transaction=False)
    samples = []
    expected = {layout.item(snap.version): len(snap.item_ids)}
    if changed_users is None:
        expected[layout.user(snap.version)] = len(snap.user_ids)
    for key, ids, vectors in per_id_hashes(snap, layout, changed_users):
        n = len(ids)
        rows = sorted({0, n - 1, *rng.integers(0, n, _SAMPLE).tolist()}) if n else []
        samples.append((key, ids, vectors, rows))
        pipe.hlen(key)
        pipe.hmget(key, [ids[r] for r in rows] or ["-"])  # HMGET needs a field
    replies = pipe.execute()
    problems = []
    for (key, ids, vectors, rows), n, blobs in zip(
        samples, replies[0::2], replies[1::2], strict=True
    ):
        if key in expected and n != expected[key]:
            problems.append(f"{key} has {n} fields, expected {expected[key]}")
        elif key not in expected and n < len(snap.user_ids):  # copied users + rewritten ones
            problems.append(f"{key} has {n} fields, fewer than the {len(snap.user_ids)} users")
        bad = [ids[r] for r, b in zip(rows, blobs, strict=False) if b != vectors[r].tobytes()]
        if bad:
            problems.append(f"{key} differs from the snapshot at {bad[:3]!r}")
    return problems
