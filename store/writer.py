"""Publishes snapshots into Redis as immutable versions and flips the pointer atomically.

`publish` writes a version's keys (see `store.layout`), meta last; reads the chunks back and
compares them byte for byte (and the hashes' sizes and a sample of their values); only then
moves `{ns}:current`, with a Lua script that never moves it backwards; then deletes versions
beyond the newest `keep` once they have been non-current for `grace_s` (readers that read the
old pointer are finishing with them). Every write is a SET/HSET/UNLINK of fixed content, so any
step can be retried. `on_stage`, if given, is called with "written" (data in Redis, meta not yet)
and "verified" (read back, pointer not yet moved): the fault tests stop the world there.

    writer = Writer.from_url("redis://localhost:6379/0", namespace="reco")
    writer.publish(load_snapshot("checkpoints/v42.safetensors"))  # -> 42
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np
import redis

from store.errors import PublishError
from store.layout import EXTRA_PREFIX, FORMAT, Layout, chunk_bounds
from store.reader import check_client, decode_hash, redis_errors, where
from store.retention import GRACE_S, KEEP, expired
from store.snapshot import Snapshot
from store.verify import differences, per_id_hashes

log = logging.getLogger(__name__)

HSET_FIELDS = 4096  # fields per HSET: ~5 ms of server time, so readers never wait long
_HASH_JOB_ROWS = 65536  # rows per pipeline round trip when filling the per-id hashes

# KEYS: current, versions, retired. ARGV: version, force ("1"/"0"). Returns {current, moved}.
_FLIP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('GET', KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1])
if cur == ARGV[1] then return {cur, 0} end
if cur == false or tonumber(ARGV[1]) > tonumber(cur) or ARGV[2] == '1' then
  redis.call('SET', KEYS[1], ARGV[1])
  if cur then redis.call('HSET', KEYS[3], cur, now) end
  redis.call('HDEL', KEYS[3], ARGV[1])
  return {ARGV[1], 1}
end
return {cur, 0}
"""


class Writer:
    """Publishes versions under `namespace`, keeping the newest `keep` (≥ 1)."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        chunk_rows: int = 16384,
        keep: int = KEEP,
        grace_s: float = GRACE_S,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        check_client(client)
        for name, value, low in [("chunk_rows", chunk_rows, 1), ("keep", keep, 1)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not grace_s >= 0:
            raise ValueError(f"grace_s must be >= 0 seconds, got {grace_s!r}")
        self.client = client
        self.layout = Layout(namespace)
        self.chunk_rows, self.keep, self.grace_s = chunk_rows, keep, float(grace_s)
        self._stage = on_stage or (lambda stage: None)
        self._flip = client.register_script(_FLIP)

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str,
        *,
        chunk_rows: int = 16384,
        keep: int = KEEP,
        grace_s: float = GRACE_S,
        on_stage: Callable[[str], None] | None = None,
        **redis_kwargs: Any,
    ) -> Writer:
        """A writer on `url` (redis://[user:password@]host:port/db, rediss:// for TLS);
        `redis_kwargs` go to redis-py (e.g. ssl_ca_certs, ssl_certfile, ssl_keyfile)."""
        redis_kwargs.setdefault("socket_timeout", 60.0)
        redis_kwargs.setdefault("socket_connect_timeout", 5.0)
        client = redis.Redis.from_url(url, **redis_kwargs)
        log.info("writer for namespace %s on %s", namespace, where(client))
        return cls(
            client, namespace, chunk_rows=chunk_rows, keep=keep, grace_s=grace_s, on_stage=on_stage
        )

    def __repr__(self) -> str:
        return f"Writer({where(self.client)}, namespace={self.layout.namespace!r})"

    def close(self) -> None:
        self.client.close()

    def current_version(self) -> int | None:
        """The version readers see now, or None if nothing is published."""
        with redis_errors(self.client, "reading the current version"):
            return self._pointer()

    def _pointer(self) -> int | None:
        raw = self.client.get(self.layout.current)
        return None if raw is None else int(raw)

    def versions(self) -> list[int]:
        """Published versions still kept, oldest first."""
        with redis_errors(self.client, "listing versions"):
            members = cast("list[bytes]", self.client.zrange(self.layout.versions, 0, -1))
        return sorted(int(v) for v in members)

    def drop(self) -> int:
        """Delete every key of the namespace, pointer first; returns how many were deleted."""
        L = self.layout
        with redis_errors(self.client, f"dropping namespace {L.namespace!r}"):
            keys = [L.current, L.versions, L.retired]
            keys += [k for found in self._data_keys().values() for k in found]
            batches = (keys[i : i + 1000] for i in range(0, len(keys), 1000))
            return sum(int(self.client.unlink(*batch)) for batch in batches)

    def publish(self, snap: Snapshot, *, force: bool = False) -> int:
        """Publish `snap` as version `snap.version`; returns the version current afterwards.

        Idempotent: a version already complete with the same content only gets the pointer
        checked. A version older than the current one is skipped (nothing could read it) unless
        `force`, which also lets the pointer move backwards. Raises PublishError (pointer
        untouched) if the data did not verify or the version exists with other content.
        """
        if not isinstance(snap, Snapshot):
            raise TypeError(f"publish takes a store.Snapshot, got {type(snap).__name__}")
        v, ns = snap.version, self.layout.namespace
        start = time.perf_counter()
        with redis_errors(self.client, f"publishing version {v} of {ns!r}", PublishError):
            current = self._pointer()
            if current is not None and v < current and not force:
                log.warning("%s: version %d is older than current %d: skipped", ns, v, current)
                return current
            existing = self._existing(snap)
            if not existing.complete:
                base = self._user_base(snap, current)
                self._write(snap, existing, base)
                wrote = time.perf_counter()
                self._verify(snap, existing, base)
                self._stage("verified")
                log.info(
                    "%s: wrote version %d (%d items x %d) in %.2f s, verified in %.2f s",
                    ns,
                    v,
                    len(snap.item_ids),
                    snap.dim,
                    wrote - start,
                    time.perf_counter() - wrote,
                )
            keys = [self.layout.current, self.layout.versions, self.layout.retired]
            reply = cast("list[bytes | int]", self._flip(keys=keys, args=[v, int(force)]))
            pointer, moved = int(reply[0]), bool(reply[1])
            if pointer != v:
                log.warning("%s: version %d written, pointer stays at %d", ns, v, pointer)
            elif moved:
                log.info("%s: current version is now %d", ns, v)
            self._cleanup()
        return pointer

    def _existing(self, snap: Snapshot) -> _Existing:
        """What Redis already holds of the snapshot's version."""
        v, L = snap.version, self.layout
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(L.meta(v))
        pipe.hlen(L.item(v))
        pipe.hlen(L.user(v))
        pipe.zscore(L.versions, v)
        pipe.get(L.current)
        raw, n_items, n_users, score, current = pipe.execute()
        published = score is not None or current == str(v).encode()
        meta = decode_hash(raw)
        same = meta.get("format") == FORMAT and meta.get("checksum") == snap.digest
        if not same:
            if published and meta:
                raise PublishError(
                    f"version {v} of {L.namespace!r} is already published with other content "
                    f"(checksum {meta.get('checksum', '?')[:12]}..., this snapshot "
                    f"{snap.digest[:12]}...): versions are immutable, publish under a new number"
                )
            return _Existing(False, published, self.chunk_rows)
        # Same content. A published version is rewritten (if at all) with its own chunking, so
        # that a reader loading it meanwhile reads the same bytes under the same keys.
        chunk_rows = int(meta["chunk_rows"]) if published else self.chunk_rows
        chunks = len(chunk_bounds(len(snap.item_ids), int(meta["chunk_rows"])))
        present = self.client.exists(*L.chunk_keys(v, chunks)) if chunks else 0
        # users carried over from a base version may include ones this snapshot no longer has
        users_ok = (
            n_users >= len(snap.user_ids)
            if meta.get("users_base")
            else (n_users == len(snap.user_ids))
        )
        complete = (
            meta.get("chunks") == str(chunks)
            and present == 2 * chunks
            and n_items == len(snap.item_ids)
            and users_ok
            and (not snap.tower or bool(self.client.exists(L.tower(v))))
        )
        return _Existing(complete, published, chunk_rows)

    def _user_base(self, snap: Snapshot, current: int | None) -> UserBase | None:
        """The version whose user vectors this one may copy, rewriting only users active
        since: the current one, if it has a stamp not after the snapshot's, the same dim, and
        not too many users the snapshot no longer has (evicted ones would pile up)."""
        if snap.user_stamps is None or current is None or current == snap.version:
            return None
        L = self.layout
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(L.meta(current), ["format", "dim", "stamp"])
        pipe.hlen(L.user(current))
        (fmt, dim, stamp), n_base = pipe.execute()
        if fmt is None or fmt.decode() != FORMAT or dim is None or int(dim) != snap.dim:
            return None
        if stamp is None or int(stamp) > snap.stamp or n_base > 1.01 * len(snap.user_ids) + 64:
            return None
        changed = np.flatnonzero(snap.user_stamps > int(stamp))
        if n_base < len(snap.user_ids) - len(changed):
            return None  # the base lacks users it should carry (its hash was damaged): write all
        return UserBase(current, int(stamp), changed)

    def _write(self, snap: Snapshot, existing: _Existing, base: UserBase | None = None) -> None:
        v, L = snap.version, self.layout
        pipe = self.client.pipeline(transaction=False)
        if not existing.published:  # leftovers of a failed attempt must not linger in hashes
            pipe.unlink(L.meta(v), L.item(v), L.user(v), L.tower(v))
        if snap.tower:
            pipe.set(L.tower(v), snap.tower)
        matrix = snap.item_vectors.reshape(-1).view(np.uint8).data
        width = 4 * snap.dim
        bounds = chunk_bounds(len(snap.item_ids), existing.chunk_rows)
        for c, (lo, hi) in enumerate(bounds):
            pipe.set(L.matrix(v, c), matrix[lo * width : hi * width])
            pipe.set(L.ids(v, c), msgspec.msgpack.encode(snap.item_ids[lo:hi]))
        pipe.execute()
        # The per-id hashes cost ~1 s of server time per million rows; two connections let the
        # client build the next commands while the server applies the previous ones.
        if base is not None:  # server-side copy; then only the users active since
            self.client.copy(L.user(base.version), L.user(v), replace=True)
        jobs = [
            (key, ids, vectors, lo)
            for key, ids, vectors in per_id_hashes(snap, L, None if base is None else base.changed)
            for lo in range(0, len(ids), _HASH_JOB_ROWS)
        ]
        with ThreadPoolExecutor(2, thread_name_prefix="store-writer") as pool:
            for _ in pool.map(lambda job: self._write_rows(*job), jobs):
                pass
        sec, usec = cast("tuple[int, int]", self.client.time())
        meta: dict[str, str | int] = {
            "format": FORMAT,
            "version": v,
            "dim": snap.dim,
            "items": len(snap.item_ids),
            "users": len(snap.user_ids),
            "created_ms": snap.created_ms,
            "published_ms": sec * 1000 + usec // 1000,
            "checksum": snap.digest,
            "chunk_rows": existing.chunk_rows,
            "chunks": len(bounds),
            "stamp": snap.stamp,
            "users_base": "" if base is None else base.version,
            **{EXTRA_PREFIX + k: val for k, val in snap.extra.items()},
        }
        fields = [x for field in meta.items() for x in field]
        self._stage("written")
        self.client.hset(L.meta(v), items=fields)  # last: its presence means "all written"

    def _write_rows(self, key: str, ids: list[str], vectors: np.ndarray, lo: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        width = 4 * vectors.shape[1]
        for s in range(lo, min(lo + _HASH_JOB_ROWS, len(ids)), HSET_FIELDS):
            e = min(s + HSET_FIELDS, len(ids))
            blob = vectors[s:e].tobytes()
            args: list[str | bytes] = [""] * (2 * (e - s))
            args[0::2] = ids[s:e]
            args[1::2] = [blob[i : i + width] for i in range(0, len(blob), width)]
            pipe.execute_command("HSET", key, *args)
        pipe.execute()

    def _verify(self, snap: Snapshot, existing: _Existing, base: UserBase | None = None) -> None:
        """Read the version back; PublishError on any difference from the snapshot."""
        changed = None if base is None else base.changed
        problems = differences(self.client, self.layout, snap, existing.chunk_rows, changed)
        if problems:
            if not existing.published:  # without meta, the next publish rewrites it all
                self.client.unlink(self.layout.meta(snap.version))
            raise PublishError(
                f"version {snap.version} of {self.layout.namespace!r} failed verification: "
                f"{'; '.join(problems)}. The current version was not changed; publish again"
            )

    def _cleanup(self) -> None:
        """Delete the versions `retention.expired` names (see there for the rules)."""
        L = self.layout
        pipe = self.client.pipeline(transaction=True)
        pipe.get(L.current)
        pipe.zrange(L.versions, 0, -1)
        pipe.hgetall(L.retired)
        pipe.time()
        current, members, retired, (sec, usec) = pipe.execute()
        keys = self._data_keys()
        doomed = expired(
            recorded={int(m) for m in members},
            retired={int(k): int(t) for k, t in retired.items()},
            current=None if current is None else int(current),
            present=set(keys),
            keep=self.keep,
            grace_ms=self.grace_s * 1000,
            now_ms=sec * 1000 + usec // 1000,
        )
        for version in doomed:
            victims = sorted(set(keys.get(version, [])), key=lambda k: k != L.meta(version))
            pipe = self.client.pipeline(transaction=False)
            if victims:
                pipe.unlink(*victims)  # one command: a reader sees all of the version or none
            pipe.zrem(L.versions, version)
            pipe.hdel(L.retired, version)
            pipe.execute()
            log.info("%s: deleted version %d (%d keys)", L.namespace, version, len(victims))

    def _data_keys(self) -> dict[int, list[str]]:
        """Every data key of the namespace, by version (one SCAN of the keyspace)."""
        keys: dict[int, list[str]] = defaultdict(list)
        for raw in self.client.scan_iter(match=self.layout.data_pattern, count=1000):
            key = raw.decode()
            version = self.layout.version_of(key)
            if version is not None:
                keys[version].append(key)
        return keys


class UserBase(NamedTuple):
    version: int  # the version whose user hash is copied
    stamp: int  # its stamp: users stamped after it are rewritten
    changed: np.ndarray  # rows of the snapshot's users to rewrite


class _Existing(NamedTuple):
    complete: bool  # every key present with this content: nothing to write
    published: bool  # was current (or recorded): never unlink or change its bytes
    chunk_rows: int  # rows per chunk to write it with
