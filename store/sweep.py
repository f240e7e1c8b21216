"""Deleting old versions: what `store.retention.expired` allows, one UNLINK per version.

One SCAN finds every data key of the namespace by version; each version's meta names its
chain, so that a version a kept one is made of stays. A version's keys go in one command, meta
first: a reader sees all of it or none.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from store.layout import Layout
from store.retention import expired

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


def sweep(client: redis.Redis, layout: Layout, keep: int, grace_s: float) -> None:
    """Delete the versions `retention.expired` names (see there for the rules)."""
    L = layout
    pipe = client.pipeline(transaction=True)
    pipe.get(L.current)
    pipe.zrange(L.versions, 0, -1)
    pipe.hgetall(L.retired)
    pipe.time()
    current, members, retired, (sec, usec) = pipe.execute()
    keys = data_keys(client, layout)
    pipe = client.pipeline(transaction=False)
    versions = sorted(keys)
    for version in versions:
        pipe.hget(L.meta(version), "chain")
    chains = {
        v: [int(c) for c in chain.split(b",")]
        for v, chain in zip(versions, pipe.execute(), strict=True)
        if chain
    }
    doomed = expired(
        recorded={int(m) for m in members},
        retired={int(k): int(t) for k, t in retired.items()},
        current=None if current is None else int(current),
        present=set(keys),
        keep=keep,
        grace_ms=grace_s * 1000,
        now_ms=sec * 1000 + usec // 1000,
        chains=chains,
    )
    for version in doomed:
        victims = sorted(set(keys.get(version, [])), key=lambda k: k != L.meta(version))
        pipe = client.pipeline(transaction=False)
        if victims:
            pipe.unlink(*victims)  # one command: a reader sees all of the version or none
        pipe.zrem(L.versions, version)
        pipe.hdel(L.retired, version)
        pipe.execute()
        log.info("%s: deleted version %d (%d keys)", L.namespace, version, len(victims))


def data_keys(client: redis.Redis, layout: Layout) -> dict[int, list[str]]:
    """Every data key of the namespace, by version (one SCAN of the keyspace)."""
    keys: dict[int, list[str]] = defaultdict(list)
    for raw in client.scan_iter(match=layout.data_pattern, count=1000):
        key = raw.decode()
        version = layout.version_of(key)
        if version is not None:
            keys[version].append(key)
    return keys
