"""Publishes snapshots into Redis as immutable versions and flips the pointer atomically.

`publish` drafts the version (`store.draft`: a delta on the version this writer made current
last, or a full one, with its approximate index), writes its keys (`store.put`, meta last),
reads them back and compares (`store.verify`); only then moves `{ns}:current`, with a Lua
script that never moves it backwards; then deletes versions beyond the newest `keep` once they
have been non-current for `grace_s` and no kept version's chain needs them. `on_stage`, if
given, is called with "written" (data in Redis, meta not yet) and "verified" (read back,
pointer not yet moved): the fault tests stop the world there.

    writer = Writer.from_url("redis://localhost:6379/0", namespace="reco")
    writer.publish(load_snapshot("checkpoints/v42.safetensors"))  # -> 42
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import redis

from store import topn
from store.cache import Copy
from store.draft import Draft, Published, Settings, draft
from store.errors import PublishError
from store.layout import FORMAT, Layout
from store.loading import parse_meta
from store.put import UserBase, write_version
from store.reader import check_client, decode_hash, redis_errors, where
from store.retention import GRACE_S, KEEP
from store.snapshot import Snapshot
from store.sweep import data_keys, sweep
from store.verify import differences

log = logging.getLogger(__name__)

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
    """Publishes versions under `namespace`, keeping the newest `keep` (≥ 1); `settings`
    (`store.draft.Settings`): deltas and compaction, the index, precomputed top-N."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        chunk_rows: int = 16384,
        keep: int = KEEP,
        grace_s: float = GRACE_S,
        on_stage: Callable[[str], None] | None = None,
        settings: Settings | None = None,
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
        self.settings = settings or Settings()
        self._stage = on_stage or (lambda stage: None)
        self._flip = client.register_script(_FLIP)
        self.published: Published | None = None  # what this writer made current last
        self._copy: Copy | None = None  # that version's table, for top-N lists
        self.last: dict[str, Any] = {}  # how the last publish went (kind, rows, seconds)

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
        settings: Settings | None = None,
        **redis_kwargs: Any,
    ) -> Writer:
        """A writer on `url` (redis://[user:password@]host:port/db, rediss:// for TLS);
        `redis_kwargs` go to redis-py (e.g. ssl_ca_certs, ssl_certfile, ssl_keyfile)."""
        redis_kwargs.setdefault("socket_timeout", 60.0)
        redis_kwargs.setdefault("socket_connect_timeout", 5.0)
        client = redis.Redis.from_url(url, **redis_kwargs)
        log.info("writer for namespace %s on %s", namespace, where(client))
        return cls(
            client,
            namespace,
            chunk_rows=chunk_rows,
            keep=keep,
            grace_s=grace_s,
            on_stage=on_stage,
            settings=settings,
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
            self.published = self._copy = None
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
            after: Published | None = None
            if not existing.complete:
                d = draft(snap, self._base(current), self.settings)
                d.index = d.index if self.settings.top_n else None  # keep it only for top-N
                drafted = time.perf_counter()
                users = self._user_base(snap, current)
                self._write(d, existing, users)
                wrote = time.perf_counter()
                self._verify(d, existing, users)
                self._stage("verified")
                after = d.after(existing.chunk_rows)
                self.last = {
                    "kind": "full" if d.full else "delta",
                    "rows": len(d.ids),
                    "removed": len(d.removed),
                    "draft_s": drafted - start,
                    "write_s": wrote - drafted,
                    "verify_s": time.perf_counter() - wrote,
                    "nprobe": d.nprobe,
                    "recall": d.recall,
                }
                log.info(
                    "%s: wrote %s version %d (%d rows of %d items x %d) in %.2f s, verified "
                    "in %.2f s",
                    ns,
                    self.last["kind"],
                    v,
                    len(d.ids),
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
            if pointer == v and after is not None:
                self.published = after
            elif self.published is None or self.published.version != pointer:
                self.published = self._copy = None
            self._cleanup()
        return pointer

    def _base(self, current: int | None) -> Published | None:
        """This writer's memory of the current version, if it is still what Redis holds."""
        prior = self.published
        if prior is None or prior.version != current or prior.chunk_rows != self.chunk_rows:
            return None
        if self.settings.top_n and (self._copy is None or self._copy.version != current):
            return None  # top-N lists need the base's table: a full version rebuilds it
        checksum = cast("bytes | None", self.client.hget(self.layout.meta(current), "checksum"))
        return prior if checksum is not None and checksum.decode() == prior.checksum else None

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
        m = parse_meta(L, v, meta)
        kinds = ["matrix", "ids"] + ([] if m.full else ["slots"]) + (["lists"] if m.index else [])
        keys = [getattr(L, k)(v, c) for c in range(m.chunks) for k in kinds]
        present = self.client.exists(*keys) if keys else 0
        # users carried over from a base version may include ones this snapshot no longer has
        users_ok = (
            n_users >= len(snap.user_ids)
            if meta.get("users_base")
            else (n_users == len(snap.user_ids))
        )
        complete = (
            present == len(keys)
            and n_items == m.rows + int(meta.get("removed") or 0)
            and users_ok
            and (not snap.tower or bool(self.client.exists(L.tower(v))))
        )
        return _Existing(complete, published, chunk_rows)

    def _user_base(self, snap: Snapshot, current: int | None) -> UserBase | None:
        """The version whose user vectors (and top-N lists) this one may copy, rewriting only
        users active since: the current one, if it has a stamp not after the snapshot's, the
        same dim, and not too many users the snapshot no longer has (they would pile up)."""
        if snap.user_stamps is None or current is None or current == snap.version:
            return None
        L = self.layout
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(L.meta(current), ["format", "dim", "stamp", "top_n"])
        pipe.hlen(L.user(current))
        (fmt, dim, stamp, top_n), n_base = pipe.execute()
        if fmt is None or fmt.decode() != FORMAT or dim is None or int(dim) != snap.dim:
            return None
        if stamp is None or int(stamp) > snap.stamp or n_base > 1.01 * len(snap.user_ids) + 64:
            return None
        changed = np.flatnonzero(snap.user_stamps > int(stamp))
        if n_base < len(snap.user_ids) - len(changed):
            return None  # the base lacks users it should carry (its hash was damaged): write all
        return UserBase(current, int(stamp), changed, int(top_n or 0))

    def _write(self, d: Draft, existing: _Existing, users: UserBase | None) -> None:
        sec, usec = cast("tuple[int, int]", self.client.time())
        n = self.settings.top_n
        write_version(
            self.client,
            self.layout,
            d,
            existing.chunk_rows,
            fresh=not existing.published,
            users=users,
            top_n=n,
            lists=self._lists(d, existing.chunk_rows) if n else None,
            now_ms=sec * 1000 + usec // 1000,
            stage=self._stage,
        )

    def _lists(self, d: Draft, chunk_rows: int) -> Callable[[np.ndarray], list[bytes]]:
        """Moves this writer's copy of the table to the draft's version; returns a function
        giving the top-N lists of snapshot users on it."""
        copy = self._copy = topn.moved(self._copy, d, chunk_rows)
        n, exact, users = self.settings.top_n, self.settings.top_n_exact, d.snap.user_vectors
        return lambda rows: list(topn.lists(copy, users[rows], n, exact))

    def _verify(self, d: Draft, existing: _Existing, users: UserBase | None) -> None:
        """Read the version back; PublishError on any difference from the draft."""
        problems = differences(self.client, self.layout, d, existing.chunk_rows, users)
        if problems:
            self.published = self._copy = None
            if not existing.published:  # without meta, the next publish rewrites it all
                self.client.unlink(self.layout.meta(d.snap.version))
            raise PublishError(
                f"version {d.snap.version} of {self.layout.namespace!r} failed verification: "
                f"{'; '.join(problems)}. The current version was not changed; publish again"
            )

    def _cleanup(self) -> None:
        sweep(self.client, self.layout, self.keep, self.grace_s)

    def _data_keys(self) -> dict[int, list[str]]:
        return data_keys(self.client, self.layout)


class _Existing(NamedTuple):
    complete: bool  # every key present with this content: nothing to write
    published: bool  # was current (or recorded): never unlink or change its bytes
    chunk_rows: int  # rows per chunk to write it with
