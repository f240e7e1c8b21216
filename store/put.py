"""Writes a draft's keys into Redis (see `store.layout`), meta last.

Chunks go in one pipeline; the per-id hashes in batches of `HSET_FIELDS` fields over two
connections (the client builds the next commands while the server applies the previous ones).
Users and top-N lists copy the base version's hash server-side (COPY), then rewrite the users
active since it. Every write is a SET/HSET/COPY of fixed content: any step can be retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import numpy as np

from store.draft import Draft
from store.layout import EXTRA_PREFIX, FORMAT, Layout, chunk_bounds

if TYPE_CHECKING:
    import redis

HSET_FIELDS = 4096  # fields per HSET: ~5 ms of server time, so readers never wait long
_JOB_FIELDS = 65536  # fields per pipeline round trip


class UserBase(NamedTuple):
    version: int  # the version whose user (and top-N) hash is copied
    stamp: int  # its stamp: users stamped after it are rewritten
    changed: np.ndarray  # rows of the snapshot's users to rewrite
    top_n: int  # N of its top-N lists (0: none, so every list is computed)


def own_chunks(d: Draft, chunk_rows: int) -> dict[str, list[bytes]]:
    """The bytes of each chunk kind of the draft's own rows (what verify compares)."""
    width = 4 * d.snap.dim
    matrix = np.ascontiguousarray(d.vectors).reshape(-1).view(np.uint8).data
    out: dict[str, list[bytes]] = {"matrix": [], "ids": []}
    if not d.full:
        out["slots"] = []
    if d.lists is not None:
        out["lists"] = []
    for lo, hi in chunk_bounds(len(d.ids), chunk_rows):
        out["matrix"].append(matrix[lo * width : hi * width])  # type: ignore[arg-type]
        out["ids"].append(msgspec.msgpack.encode(d.ids[lo:hi]))
        if "slots" in out:
            out["slots"].append(d.slots[lo:hi].astype("<i4").tobytes())
        if d.lists is not None:
            out["lists"].append(d.lists[lo:hi].astype("<i4").tobytes())
    return out


def write_version(
    client: redis.Redis,
    layout: Layout,
    d: Draft,
    chunk_rows: int,
    *,
    fresh: bool,
    users: UserBase | None,
    top_n: int,
    lists: Callable[[np.ndarray], Sequence[bytes]] | None,
    now_ms: int,
    stage: Callable[[str], None],
) -> None:
    """Write version `d.snap.version`; `fresh`: not published, so leftovers may be unlinked.
    `lists(user_rows)` gives the top-N JSON of those snapshot users."""
    snap, v, L = d.snap, d.snap.version, layout
    pipe = client.pipeline(transaction=False)
    if fresh:  # leftovers of a failed attempt must not linger in hashes
        pipe.unlink(L.meta(v), L.item(v), L.user(v), L.topn(v), L.tower(v))
    if snap.tower:
        pipe.set(L.tower(v), snap.tower)
    chunks = own_chunks(d, chunk_rows)
    for kind, blobs in chunks.items():
        for c, blob in enumerate(blobs):
            pipe.set(getattr(L, kind)(v, c), blob)
    if not d.full:
        pipe.set(L.removed(v), d.removed.astype("<i4").tobytes())
    if d.full and d.centroids is not None:
        pipe.set(L.centroids(v), np.ascontiguousarray(d.centroids, "<f4").tobytes())
    pipe.execute()
    # Jobs make their fields when they run: 10M ids' rows as text are ~1 GB of small objects
    jobs: list[Job] = [
        (
            L.item(v),
            lo,
            lambda lo, hi: (d.ids[lo:hi], list(map(str, range(lo, min(hi, len(d.ids)))))),
        )
        for lo in range(0, len(d.ids), _JOB_FIELDS)
    ]
    jobs += _fixed(L.item(v), d.removed_ids, [""] * len(d.removed_ids))
    changed = None if users is None else users.changed
    user_rows = np.arange(len(snap.user_ids)) if changed is None else changed
    if users is not None:
        client.copy(L.user(users.version), L.user(v), replace=True)
    jobs += _fixed(*_user_job(L.user(v), snap.user_ids, snap.user_vectors, user_rows))
    if top_n and lists is not None:
        carry = users is not None and users.top_n == top_n
        if carry:
            assert users is not None
            client.copy(L.topn(users.version), L.topn(v), replace=True)
        pick = user_rows if carry else np.arange(len(snap.user_ids))
        jobs += _fixed(L.topn(v), [snap.user_ids[r] for r in pick.tolist()], list(lists(pick)))
    with ThreadPoolExecutor(2, thread_name_prefix="store-writer") as pool:
        for _ in pool.map(
            lambda job: _hset(client, job[0], *job[2](job[1], job[1] + _JOB_FIELDS)), jobs
        ):
            pass
    meta = _meta(d, chunk_rows, len(chunks["ids"]), users, top_n, now_ms)
    stage("written")
    client.hset(L.meta(v), items=[x for kv in meta.items() for x in kv])  # last: "all written"


Job = tuple[str, int, Callable[[int, int], tuple[list[str], Sequence[bytes | str]]]]


def _fixed(key: str, ids: list[str], values: Sequence[bytes | str]) -> list[Job]:
    """Jobs of `_JOB_FIELDS` fields over lists made already."""
    return [
        (key, lo, lambda lo, hi: (ids[lo:hi], values[lo:hi]))
        for lo in range(0, len(ids), _JOB_FIELDS)
    ]


def _user_job(
    key: str, ids: list[str], vectors: np.ndarray, rows: np.ndarray
) -> tuple[str, list[str], Sequence[bytes | str]]:
    blob = np.ascontiguousarray(vectors[rows]).tobytes()
    width = 4 * vectors.shape[1]
    return (
        key,
        [ids[r] for r in rows.tolist()],
        [blob[i : i + width] for i in range(0, len(blob), width)],
    )


def _hset(client: redis.Redis, key: str, ids: list[str], values: Sequence[bytes | str]) -> None:
    pipe = client.pipeline(transaction=False)
    for s in range(0, len(ids), HSET_FIELDS):
        args: list[str | bytes] = [""] * (2 * len(ids[s : s + HSET_FIELDS]))
        args[0::2] = ids[s : s + HSET_FIELDS]
        args[1::2] = values[s : s + HSET_FIELDS]
        pipe.execute_command("HSET", key, *args)
    pipe.execute()


def _meta(
    d: Draft, chunk_rows: int, chunks: int, users: UserBase | None, top_n: int, now_ms: int
) -> dict[str, str | int]:
    snap = d.snap
    indexed = d.centroids is not None or (d.base is not None and d.base.centroids is not None)
    nlist = len(d.centroids) if d.centroids is not None else (
        len(d.base.centroids) if d.base is not None and d.base.centroids is not None else 0
    )  # fmt: skip
    return {
        "format": FORMAT,
        "version": snap.version,
        "dim": snap.dim,
        "items": d.items,
        "slots": d.size,
        "users": len(snap.user_ids),
        "created_ms": snap.created_ms,
        "published_ms": now_ms,
        "checksum": snap.digest,
        "chunk_rows": chunk_rows,
        "chunks": chunks,
        "rows": len(d.ids),
        "stamp": snap.stamp,
        "base": "" if d.base is None else d.base.version,
        "chain": ",".join(map(str, d.chain)),
        "removed": len(d.removed),
        "users_base": "" if users is None else users.version,
        "index": "ivf" if indexed else "",
        "index_nlist": nlist,
        "index_nprobe": d.nprobe if indexed else 0,
        "index_recall": f"{d.recall:.4f}" if indexed and d.full else "",
        "top_n": top_n,
        **{EXTRA_PREFIX + k: val for k, val in snap.extra.items()},
    }
