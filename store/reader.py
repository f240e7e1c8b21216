"""What downstream services import: vectors and exact top-k from the current version.

Every call reads `{ns}:current` once and then only that version's keys (see `store.layout`), so
it never mixes versions. If the version is deleted under it (past the writer's grace period),
the call re-reads the pointer and retries once. Top-k scores a cached copy of the version's
whole item matrix, loaded once per version by one thread; calls in other threads meanwhile
answer wholly from the previous version (~1 s for a million items) instead of waiting.

    reader = Reader.from_url("redis://localhost:6379/0", namespace="reco")
    reader.recommend("user-42", k=10, exclude=["seen-item"])
    # [{"item": "i-17", "score": 3.2}, ...]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec
import numpy as np
import redis

from store.errors import NoVersion, StoreError, UnknownUser, Unreachable
from store.layout import DEFAULT_NAMESPACE, FORMAT, Layout, chunk_bounds
from store.table import Table, as_id
from store.tower import QueryTower

log = logging.getLogger(__name__)
T = TypeVar("T")
_IDS = msgspec.msgpack.Decoder(list[str])
_LOAD_GROUP = 16  # chunks per round trip when loading a table: bounds reply buffers (~64 MB)


class _Vanished(StoreError):
    """A key of the version being read is gone: the version was deleted meanwhile."""


class Reader:
    """Reads the current version of `namespace`. Thread-safe; one per process is enough."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        check_client(client)
        self.client = client
        self.layout = Layout(namespace)
        self._table: Table | None = None
        self._tower: tuple[int, QueryTower] | None = None
        self._loading = threading.Lock()

    @classmethod
    def from_url(cls, url: str, namespace: str = DEFAULT_NAMESPACE, **redis_kwargs: Any) -> Reader:
        """A reader on `url` (redis://[user:password@]host:port/db, rediss:// for TLS)."""
        redis_kwargs.setdefault("socket_timeout", 5.0)
        redis_kwargs.setdefault("socket_connect_timeout", 2.0)
        return cls(redis.Redis.from_url(url, **redis_kwargs), namespace)

    def __repr__(self) -> str:
        return f"Reader({where(self.client)}, namespace={self.layout.namespace!r})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> int | None:
        """The current version, or None if nothing is published."""
        with redis_errors(self.client, "reading the current version"):
            raw = self.client.get(self.layout.current)
        return None if raw is None else int(raw)

    def meta(self) -> dict[str, str]:
        """The current version's metadata (`store.layout` lists the fields)."""

        def read(v: int) -> dict[str, str]:
            raw = self.client.hgetall(self.layout.meta(v))
            if not raw:
                raise _Vanished(v)
            return decode_hash(raw)

        return self._at_current(read)

    def recommend(
        self, user: str | int, k: int = 10, exclude: Iterable[str | int] = ()
    ) -> list[dict[str, str | float]]:
        """The user's top-k items, best first: [{"item": id, "score": float}, ...].

        Raises UnknownUser if the current version has no vector for the user.
        """
        uid = as_id(user)
        exclude = list(exclude)

        def answer(table: Table) -> list[dict[str, str | float]]:
            v = table.version
            vector = self._vectors(v, self.layout.user(v), [uid]).get(uid)
            if vector is None:
                raise UnknownUser(uid, v, self.layout.namespace)
            return table.top_k(vector, k, exclude)

        def read(v: int) -> list[dict[str, str | float]]:
            table = self._table_at(v)
            if table.version != v:  # the previous version, while another thread loads `v`
                try:
                    return answer(table)
                except _Vanished:  # deleted meanwhile: wait for the load
                    table = self._table_at(v, wait=True)
            return answer(table)

        return self._at_current(read)

    def recommend_vector(
        self, query: np.ndarray, k: int = 10, exclude: Iterable[str | int] = ()
    ) -> list[dict[str, str | float]]:
        """Top-k items for any query vector of the current version's dim (cold start)."""
        exclude = list(exclude)
        return self._at_current(lambda v: self._table_at(v).top_k(query, k, exclude))

    def recommend_for(
        self,
        recent_items: Iterable[str | int] = (),
        context: Mapping[str, Any] | None = None,
        k: int = 10,
        exclude: Iterable[str | int] = (),
    ) -> list[dict[str, str | float]]:
        """Top-k for a user the model has no vector for (new, or seen a minute ago): ψ(x) is
        computed from the user's recent items (oldest first) and context with the published
        query tower. With no history and no context: what is popular (bias + trend prior)."""
        recent = [as_id(i) for i in recent_items]
        exclude = list(exclude)

        def read(v: int) -> list[dict[str, str | float]]:
            table = self._table_at(v, wait=True)
            tower = self._tower_at(v)
            rows = [table.index[i] for i in recent if i in table.index]
            return table.top_k(tower.query(table.matrix[rows], context), k, exclude)

        return self._at_current(read)

    def _tower_at(self, version: int) -> QueryTower:
        cached = self._tower
        if cached is not None and cached[0] == version:
            return cached[1]
        blob = self.client.get(self.layout.tower(version))
        if blob is None:
            if not self.client.exists(self.layout.meta(version)):
                raise _Vanished(version)
            raise StoreError(
                f"version {version} of namespace {self.layout.namespace!r} has no query tower: "
                "it was published without one (an older trainer); publish a new checkpoint"
            )
        tower = QueryTower.from_bytes(bytes(blob) if isinstance(blob, bytes) else blob.encode())
        self._tower = (version, tower)
        return tower

    def item_vectors(self, ids: Iterable[str | int]) -> dict[str, np.ndarray]:
        """The vectors of `ids` in the current version; ids it lacks are omitted."""
        wanted = list(dict.fromkeys(map(as_id, ids)))
        return self._at_current(lambda v: self._vectors(v, self.layout.item(v), wanted))

    def user_vector(self, user: str | int) -> np.ndarray | None:
        """The user's vector in the current version, or None."""
        uid = as_id(user)
        return self._at_current(lambda v: self._vectors(v, self.layout.user(v), [uid]).get(uid))

    def _at_current(self, read: Callable[[int], T]) -> T:
        version = self.version()
        if version is None:
            raise NoVersion(self.layout.namespace)
        try:
            with redis_errors(self.client, f"reading version {version}"):
                return read(version)
        except _Vanished:
            retry = self.version()
            if retry is None:
                raise NoVersion(self.layout.namespace) from None
        try:
            with redis_errors(self.client, f"reading version {retry}"):
                return read(retry)
        except _Vanished:
            raise StoreError(
                f"version {retry} of namespace {self.layout.namespace!r} is current but its "
                "keys are missing (deleted by hand, or a writer with a tiny grace_s?): "
                "republish it"
            ) from None

    def _table_at(self, version: int, wait: bool = False) -> Table:
        """The table of `version`; while another thread loads it, the previous table.

        The caller reads everything else at the returned table's version, so a call answers
        wholly from the old or wholly from the new version, and only one thread waits for a load.
        """
        table = self._table
        if table is not None and table.version == version:
            return table
        if table is None or wait:
            self._loading.acquire()
        elif not self._loading.acquire(blocking=False):
            return table
        try:
            table = self._table
            if table is None or table.version != version:
                table = self._table = load_table(self.client, self.layout, version)
            return table
        finally:
            self._loading.release()

    def _vectors(self, version: int, key: str, ids: list[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        # In one MULTI: the values and the version's meta; no meta means the version is gone.
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(key, ids)
        pipe.hget(self.layout.meta(version), "dim")
        blobs, dim = pipe.execute()
        if dim is None:
            raise _Vanished(version)
        return {
            i: decode_vector(b, int(dim), f"{key}[{i!r}]")
            for i, b in zip(ids, blobs, strict=True)
            if b is not None
        }


def read_chunks(
    client: redis.Redis, layout: Layout, version: int, chunks: int
) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """(chunk, matrix bytes, ids bytes) of a version's chunks, in order, `_LOAD_GROUP` chunks
    per round trip (bounds the reply buffers); None where a key is missing."""
    for first in range(0, chunks, _LOAD_GROUP):
        group = range(first, min(first + _LOAD_GROUP, chunks))
        pipe = client.pipeline(transaction=False)
        for c in group:
            pipe.get(layout.matrix(version, c))
            pipe.get(layout.ids(version, c))
        replies = pipe.execute()
        yield from zip(group, replies[0::2], replies[1::2], strict=True)


def load_table(client: redis.Redis, layout: Layout, version: int) -> Table:
    """Read a version's item ids and matrix from its chunk keys (raises _Vanished if gone)."""
    start = time.perf_counter()
    raw = client.hgetall(layout.meta(version))
    if not raw:
        raise _Vanished(version)
    meta = decode_hash(raw)
    if meta.get("format") != FORMAT:
        raise StoreError(
            f"version {version} of namespace {layout.namespace!r} has layout format "
            f"{meta.get('format')!r}; this reader reads format {FORMAT}: upgrade recstream"
        )
    dim, items, chunks = int(meta["dim"]), int(meta["items"]), int(meta["chunks"])
    bounds = chunk_bounds(items, int(meta["chunk_rows"]))
    if len(bounds) != chunks:
        raise StoreError(f"{layout.meta(version)} is inconsistent: {meta}; republish it")
    matrix = np.empty((items, dim), np.float32)
    ids: list[str] = []
    for c, blob, id_blob in read_chunks(client, layout, version, chunks):
        if blob is None or id_blob is None:
            raise _Vanished(version)
        lo, hi = bounds[c]
        chunk_ids = _IDS.decode(id_blob)
        if len(blob) != (hi - lo) * dim * 4 or len(chunk_ids) != hi - lo:
            raise StoreError(
                f"chunk {c} of version {version} of namespace {layout.namespace!r} has "
                f"{len(blob)} bytes and {len(chunk_ids)} ids, expected {(hi - lo) * dim * 4} "
                f"and {hi - lo}: the version is corrupt, republish it"
            )
        matrix[lo:hi] = np.frombuffer(blob, "<f4").reshape(hi - lo, dim)
        ids.extend(chunk_ids)
    log.info(
        "loaded version %d of %s: %d items x %d in %.2f s",
        version,
        layout.namespace,
        items,
        dim,
        time.perf_counter() - start,
    )
    return Table(version=version, ids=ids, matrix=matrix)


def decode_vector(blob: bytes, dim: int, where_: str) -> np.ndarray:
    """A stored vector as float32; a wrong byte length (a torn vector) is an error."""
    if len(blob) != 4 * dim:
        raise StoreError(
            f"{where_} has {len(blob)} bytes, expected {4 * dim} (dim {dim}): a torn or foreign "
            "value; republish the version"
        )
    return np.frombuffer(blob, "<f4").astype(np.float32)


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A HGETALL reply (bytes) as text."""
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def check_client(client: redis.Redis) -> None:
    """The store reads and writes bytes: refuse a client that decodes replies to str."""
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError(
            "the redis client has decode_responses=True; the store needs raw bytes: "
            "create it with decode_responses=False (the default)"
        )


def where(client: redis.Redis) -> str:
    """The server a client talks to, for messages; never the username or password."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    tls = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


@contextmanager
def redis_errors(
    client: redis.Redis, doing: str, error: type[StoreError] = StoreError
) -> Iterator[None]:
    """Turn redis-py's errors into `error`, naming what was being done and where; into
    `Unreachable` when no Redis answered (unless a narrower `error` is asked for)."""
    try:
        yield
    except redis.RedisError as e:
        if error is StoreError and unreachable(e):
            detail = str(e).rstrip(".")  # "Error 111 connecting to HOST:PORT. Connection refused"
            raise Unreachable(where(client), f"{doing}: {detail.split('. ')[-1]}") from e
        raise error(f"{doing}: redis at {where(client)} failed: {e}") from e


def unreachable(e: redis.RedisError) -> bool:
    """Whether `e` says that no Redis answered (not that one answered with an error)."""
    if isinstance(e, redis.AuthenticationError | redis.exceptions.AuthorizationError):
        return False  # a server answered, and refused the credentials
    if "certificate verify failed" in str(e) or "SSL" in type(e).__name__:
        return False  # a server answered, and TLS failed: a setting to fix, not an outage
    return isinstance(e, redis.ConnectionError) or str(e).startswith("Timeout connecting")
