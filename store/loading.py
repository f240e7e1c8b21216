"""Reading one version's own rows from Redis (its chunks), and its meta (see `store.layout`).

`read_meta` checks the format; `read_part` reads a version's rows — the whole table of a full
version, the changed rows of a delta — with their ids, slots and IVF lists, `_LOAD_GROUP`
chunks per round trip. A missing key raises `Vanished`: the version was deleted meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from store.errors import StoreError
from store.layout import FORMAT, Layout, chunk_bounds

if TYPE_CHECKING:
    import redis

_IDS = msgspec.msgpack.Decoder(list[str])
_LOAD_GROUP = 16  # chunks per round trip when loading: bounds reply buffers (~64 MB)


class Vanished(StoreError):
    """A key of the version being read is gone: the version was deleted meanwhile."""


@dataclass(frozen=True)
class Meta:
    """The fields of a version's meta that readers act on."""

    version: int
    dim: int
    slots: int
    rows: int
    chunk_rows: int
    chunks: int
    chain: list[int]  # this version first, the full one last
    index: str
    nprobe: int
    fields: dict[str, str]

    @property
    def full(self) -> bool:
        return len(self.chain) == 1


def read_meta(client: redis.Redis, layout: Layout, version: int) -> Meta:
    raw = client.hgetall(layout.meta(version))
    if not raw:
        raise Vanished(version)
    fields = {_text(k): _text(v) for k, v in raw.items()}
    return parse_meta(layout, version, fields)


def parse_meta(layout: Layout, version: int, fields: dict[str, str]) -> Meta:
    if fields.get("format") != FORMAT:
        raise StoreError(
            f"version {version} of namespace {layout.namespace!r} has layout format "
            f"{fields.get('format')!r}; this reader reads format {FORMAT}: upgrade recstream, "
            "or publish a new version with this one's writer"
        )
    try:
        meta = Meta(
            version=version,
            dim=int(fields["dim"]),
            slots=int(fields["slots"]),
            rows=int(fields["rows"]),
            chunk_rows=int(fields["chunk_rows"]),
            chunks=int(fields["chunks"]),
            chain=[int(c) for c in fields["chain"].split(",")],
            index=fields.get("index", ""),
            nprobe=int(fields.get("index_nprobe") or 0),
            fields=fields,
        )
    except (KeyError, ValueError) as e:
        raise StoreError(f"{layout.meta(version)} is inconsistent ({e}): {fields}") from e
    if meta.chain[0] != version or len(chunk_bounds(meta.rows, meta.chunk_rows)) != meta.chunks:
        raise StoreError(f"{layout.meta(version)} is inconsistent: {fields}; republish it")
    return meta


@dataclass
class Part:
    """A version's own rows: all of a full version's, a delta's changed ones."""

    meta: Meta
    vectors: np.ndarray  # (rows, dim) float32
    ids: list[str]
    slots: np.ndarray  # int64 table slot of each row (= row for a full version)
    lists: np.ndarray | None  # int32 IVF list of each row, with an index
    removed: np.ndarray  # int64 slots a delta emptied
    centroids: np.ndarray | None  # a full version's IVF centroids


def read_chunks(
    client: redis.Redis, layout: Layout, version: int, chunks: int, kinds: tuple[str, ...]
) -> Iterator[tuple[int, list[bytes | None]]]:
    """(chunk, [bytes of each kind]) of a version's chunks, in order; None where missing."""
    for first in range(0, chunks, _LOAD_GROUP):
        group = range(first, min(first + _LOAD_GROUP, chunks))
        pipe = client.pipeline(transaction=False)
        for c in group:
            for kind in kinds:
                pipe.get(getattr(layout, kind)(version, c))
        replies = pipe.execute()
        n = len(kinds)
        for k, c in enumerate(group):
            yield c, replies[k * n : (k + 1) * n]


def read_part(
    client: redis.Redis, layout: Layout, meta: Meta, out: np.ndarray | None = None
) -> Part:
    """The rows of `meta`'s version; a full version's vectors go into `out` if given (a buffer
    with room to grow, so that deltas can be applied in place later)."""
    v, dim = meta.version, meta.dim
    kinds = (
        ("matrix", "ids") + (() if meta.full else ("slots",)) + (("lists",) if meta.index else ())
    )
    vectors = out[: meta.rows] if out is not None else np.empty((meta.rows, dim), np.float32)
    ids: list[str] = []
    slots = np.arange(meta.rows, dtype=np.int64) if meta.full else np.empty(meta.rows, np.int64)
    lists = np.empty(meta.rows, np.int32) if meta.index else None
    bounds = chunk_bounds(meta.rows, meta.chunk_rows)
    for c, blobs in read_chunks(client, layout, v, meta.chunks, kinds):
        if any(b is None for b in blobs):
            raise Vanished(v)
        got = dict(zip(kinds, blobs, strict=True))
        lo, hi = bounds[c]
        chunk_ids = _IDS.decode(got["ids"] or b"")
        sizes = {"matrix": (hi - lo) * dim * 4, "slots": (hi - lo) * 4, "lists": (hi - lo) * 4}
        wrong = [k for k, size in sizes.items() if k in got and len(got[k]) != size]  # type: ignore[arg-type]
        if wrong or len(chunk_ids) != hi - lo:
            raise StoreError(
                f"chunk {c} of version {v} of namespace {layout.namespace!r} has the wrong size "
                f"({', '.join(wrong) or 'ids'}): the version is corrupt, republish it"
            )
        vectors[lo:hi] = np.frombuffer(got["matrix"], "<f4").reshape(hi - lo, dim)  # type: ignore[arg-type]
        ids.extend(chunk_ids)
        if "slots" in got:
            slots[lo:hi] = np.frombuffer(got["slots"], "<i4")  # type: ignore[arg-type]
        if lists is not None:
            lists[lo:hi] = np.frombuffer(got["lists"], "<i4")  # type: ignore[arg-type]
    extra: dict[str, Any] = {"removed": None, "centroids": None}
    pipe = client.pipeline(transaction=False)
    pipe.get(layout.removed(v))
    pipe.get(layout.centroids(v))
    pipe.exists(layout.meta(v))
    removed, centroids, alive = pipe.execute()
    if not alive or (not meta.full and removed is None):
        raise Vanished(v)
    extra["removed"] = np.frombuffer(removed or b"", "<i4").astype(np.int64)
    if meta.index and meta.full:
        if centroids is None or len(centroids) % (4 * dim):
            raise StoreError(f"version {v} of {layout.namespace!r} lacks its IVF centroids")
        extra["centroids"] = np.frombuffer(centroids, "<f4").reshape(-1, dim).copy()
    return Part(meta, vectors, ids, slots, lists, **extra)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
