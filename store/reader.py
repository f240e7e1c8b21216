"""What downstream services import: vectors, exact and approximate top-k, precomputed top-N.

Every call reads `{ns}:current` once and then only that version's keys (see `store.layout`), so
it never mixes versions. If the version is deleted under it (past the writer's grace period),
the call re-reads the pointer and retries once. Top-k scores a cached copy of the version's item
table (`store.cache`): loaded once, then moved to each new version in place when that version is
a delta of it; calls in other threads meanwhile answer wholly from the previous version.
`exact=False` answers from the version's approximate index (`store.ivf`) instead of scanning.

    reader = Reader.from_url("redis://localhost:6379/0", namespace="reco")
    reader.recommend("user-42", k=10, exclude=["seen-item"])
    # [{"item": "i-17", "score": 3.2}, ...]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import redis

from store.cache import Cache, Copy, load
from store.errors import NoVersion, StoreError, UnknownUser, Unreachable
from store.layout import DEFAULT_NAMESPACE, Layout
from store.loading import Meta, Vanished, read_meta
from store.lookup import item_vectors, top_k
from store.table import Table, as_id
from store.tower import QueryTower

log = logging.getLogger(__name__)
T = TypeVar("T")
_Vanished = Vanished  # the name older code and tests use
Recs = list[dict[str, str | float]]


class Reader:
    """Reads the current version of `namespace`. Thread-safe; one per process is enough."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        check_client(client)
        self.client = client
        self.layout = Layout(namespace)
        self.cache = Cache(client, self.layout)
        self._tower: tuple[int, QueryTower] | None = None
        self._metas: dict[int, Meta] = {}

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
        return self._at_current(lambda v: dict(self._meta(v).fields))

    def recommend(
        self, user: str | int, k: int = 10, exclude: Iterable[str | int] = (), exact: bool = True
    ) -> Recs:
        """The user's top-k items, best first: [{"item": id, "score": float}, ...]; with
        `exact=False` from the approximate index (recall@100 ≥ the writer's target).

        Raises UnknownUser if the current version has no vector for the user.
        """
        uid = as_id(user)
        exclude = list(exclude)

        def answer(copy: Copy) -> Recs:
            v = copy.version
            vector = self._vectors(v, self.layout.user(v), [uid]).get(uid)
            if vector is None:
                raise UnknownUser(uid, v, self.layout.namespace)
            return top_k(copy, vector, k, exclude, exact)

        def read(v: int) -> Recs:
            with self.cache.view(v) as copy:
                if copy.version == v:
                    return answer(copy)
                try:  # the previous version, while another thread moves the copy to `v`
                    return answer(copy)
                except Vanished:  # deleted meanwhile: wait for the move
                    pass
            with self.cache.view(v, wait=True) as copy:
                return answer(copy)

        return self._at_current(read)

    def recommend_vector(
        self,
        query: np.ndarray,
        k: int = 10,
        exclude: Iterable[str | int] = (),
        exact: bool = True,
    ) -> Recs:
        """Top-k items for any query vector of the current version's dim (cold start)."""
        exclude = list(exclude)

        def read(v: int) -> Recs:
            with self.cache.view(v) as copy:
                return top_k(copy, query, k, exclude, exact)

        return self._at_current(read)

    def recommend_for(
        self,
        recent_items: Iterable[str | int] = (),
        context: Mapping[str, Any] | None = None,
        k: int = 10,
        exclude: Iterable[str | int] = (),
        exact: bool = True,
    ) -> Recs:
        """Top-k for a user the model has no vector for (new, or seen a minute ago): ψ(x) is
        computed from the user's recent items (oldest first) and context with the published
        query tower. With no history and no context: what is popular (bias + trend prior)."""
        recent = [as_id(i) for i in recent_items]
        exclude = list(exclude)

        def read(v: int) -> Recs:
            with self.cache.view(v, wait=True) as copy:
                table = copy.table
                tower = self._tower_at(copy.version)
                rows = [table.index[i] for i in recent if i in table.index]
                return top_k(copy, tower.query(table.matrix[rows], context), k, exclude, exact)

        return self._at_current(read)

    def top_n(self, user: str | int) -> Recs | None:
        """The user's precomputed top-N (`publish --top-n N`) in the current version, or None
        if the version has no list for the user; StoreError if it has no lists at all."""
        uid = as_id(user)

        def read(v: int) -> Recs | None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hget(self.layout.topn(v), uid)
            pipe.hget(self.layout.meta(v), "top_n")
            blob, n = pipe.execute()
            if n is None:
                raise Vanished(v)
            if not int(n):
                raise StoreError(
                    f"version {v} of namespace {self.layout.namespace!r} has no precomputed "
                    "top-N lists: publish with `recstream publish --top-n N`"
                )
            return None if blob is None else json.loads(blob)

        return self._at_current(read)

    def _tower_at(self, version: int) -> QueryTower:
        cached = self._tower
        if cached is not None and cached[0] == version:
            return cached[1]
        blob = self.client.get(self.layout.tower(version))
        if blob is None:
            if not self.client.exists(self.layout.meta(version)):
                raise Vanished(version)
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
        return self._at_current(lambda v: self._item_vectors(v, wanted))

    def user_vector(self, user: str | int) -> np.ndarray | None:
        """The user's vector in the current version, or None."""
        uid = as_id(user)
        return self._at_current(lambda v: self._vectors(v, self.layout.user(v), [uid]).get(uid))

    def _meta(self, version: int) -> Meta:
        meta = self._metas.get(version)
        if meta is None:
            meta = read_meta(self.client, self.layout, version)
            if len(self._metas) > 16:
                self._metas.clear()
            self._metas[version] = meta
        return meta

    def _item_vectors(self, v: int, ids: list[str]) -> dict[str, np.ndarray]:
        return item_vectors(self.client, self.layout, self._meta(v), ids)

    def _at_current(self, read: Callable[[int], T]) -> T:
        version = self.version()
        if version is None:
            raise NoVersion(self.layout.namespace)
        try:
            with redis_errors(self.client, f"reading version {version}"):
                return read(version)
        except Vanished:
            retry = self.version()
            if retry is None:
                raise NoVersion(self.layout.namespace) from None
        try:
            with redis_errors(self.client, f"reading version {retry}"):
                return read(retry)
        except Vanished:
            raise StoreError(
                f"version {retry} of namespace {self.layout.namespace!r} is current but its "
                "keys are missing (deleted by hand, or a writer with a tiny grace_s?): "
                "republish it"
            ) from None

    def _vectors(self, version: int, key: str, ids: list[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        # In one MULTI: the values and the version's meta; no meta means the version is gone.
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(key, ids)
        pipe.hget(self.layout.meta(version), "dim")
        blobs, dim = pipe.execute()
        if dim is None:
            raise Vanished(version)
        return {
            i: decode_vector(b, int(dim), f"{key}[{i!r}]")
            for i, b in zip(ids, blobs, strict=True)
            if b is not None
        }


def load_table(client: redis.Redis, layout: Layout, version: int) -> Table:
    """The whole item table of a version (raises Vanished if gone): for tests and tools."""
    return load(client, layout, read_meta(client, layout, version)).table


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
