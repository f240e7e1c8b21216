"""A synthetic event stream with a hidden truth: users and items in taste clusters.

Each user belongs to one cluster and the catalogue is split into clusters. An event picks a
user (activity mildly skewed), then, with probability `affinity`, an item of the user's
cluster, else any item; both item draws follow a Zipf-like popularity. With `affinity=1`
the clusters never meet: the disjoint groups a folding test needs.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from stream.event import encode

DEVICES = ("mobile", "desktop", "tablet", "tv")
_DEVICE_P = np.array([0.55, 0.3, 0.1, 0.05])
_USER_SKEW = 0.5  # Zipf exponent of user activity: mild
_CHUNK = 65_536


@dataclass(frozen=True)
class World:
    """The hidden truth: who likes what. Users are ints 0..users-1, items strings "i<n>"."""

    users: int
    items: int
    clusters: int = 8
    affinity: float = 0.8
    zipf: float = 1.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.users < 1 or self.clusters < 1 or self.items < self.clusters:
            raise ValueError(
                f"need users >= 1 and items >= clusters >= 1, got users={self.users},"
                f" items={self.items}, clusters={self.clusters}"
            )
        if not 0.0 <= self.affinity <= 1.0 or self.zipf < 0:
            raise ValueError(
                f"need 0 <= affinity <= 1 and zipf >= 0, got affinity={self.affinity},"
                f" zipf={self.zipf}"
            )

    @cached_property
    def _truth(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0])
        user_cluster = np.empty(self.users, dtype=np.int64)
        user_cluster[rng.permutation(self.users)] = np.arange(self.users) % self.clusters
        item_cluster = np.empty(self.items, dtype=np.int64)
        item_cluster[rng.permutation(self.items)] = np.arange(self.items) % self.clusters
        item_weight = _zipf_weights(self.items, self.zipf, rng)
        user_weight = _zipf_weights(self.users, _USER_SKEW, rng)
        # Items sorted by cluster; cluster c's cumulative shares lie in (c, c + 1], so one
        # searchsorted over the whole array draws from any user's own cluster.
        by_cluster = np.argsort(item_cluster, kind="stable")
        counts = np.bincount(item_cluster, minlength=self.clusters)
        ends = np.cumsum(counts)
        cdf = np.empty(self.items)
        for c, (lo, hi) in enumerate(zip(ends - counts, ends, strict=True)):
            w = np.cumsum(item_weight[by_cluster[lo:hi]])
            cdf[lo:hi] = c + w / w[-1]
            cdf[hi - 1] = c + 1.0
        return {
            "user_cluster": user_cluster,
            "item_cluster": item_cluster,
            "user_cdf": _cdf(user_weight),
            "item_cdf": _cdf(item_weight),
            "cluster_items": by_cluster,
            "cluster_cdf": cdf,
            "cluster_end": ends,
        }

    def user_cluster(self, user: str | int) -> int:
        """The taste cluster of `user` (an int, or its decimal string)."""
        return int(self._truth["user_cluster"][int(user)])

    def item_cluster(self, item: str) -> int:
        """The cluster of `item` ("i<n>")."""
        if not item.startswith("i") or not item[1:].isdigit():
            raise ValueError(f"item ids look like 'i<n>', got {item!r}")
        return int(self._truth["item_cluster"][int(item[1:])])


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights 1/rank**exponent, ranks shuffled so popularity is unrelated to the id."""
    return np.power(rng.permutation(n) + 1.0, -exponent)


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def generate(
    world: World, events: int, start_ms: int | None = None, gap_ms: int = 1000
) -> Iterator[dict[str, Any]]:
    """`events` event dicts, timestamps `gap_ms` apart; by default the last is about now."""
    if gap_ms < 1:
        raise ValueError(f"gap_ms must be >= 1 so timestamps strictly increase, got {gap_ms}")
    if start_ms is None:
        start_ms = time.time_ns() // 1_000_000 - (events - 1) * gap_ms
    truth = world._truth
    rng = np.random.default_rng([world.seed, 1])
    for first in range(0, events, _CHUNK):
        n = min(_CHUNK, events - first)
        users = np.searchsorted(truth["user_cdf"], rng.random(n), side="right")
        users = np.minimum(users, world.users - 1)
        items = np.searchsorted(truth["item_cdf"], rng.random(n), side="right")
        mine = rng.random(n) < world.affinity
        cluster = truth["user_cluster"][users[mine]]
        at = np.searchsorted(truth["cluster_cdf"], cluster + rng.random(cluster.size), side="right")
        at = np.minimum(at, truth["cluster_end"][cluster] - 1)  # c + u may round up to c + 1
        items[mine] = truth["cluster_items"][at]
        items = np.minimum(items, world.items - 1)
        ts = start_ms + (first + np.arange(n, dtype=np.int64)) * gap_ms
        hours = (ts // 3_600_000) % 24
        devices = rng.choice(len(DEVICES), size=n, p=_DEVICE_P)
        columns = (users, items, ts, hours, devices)
        for k, (u, i, t, h, d) in enumerate(zip(*(c.tolist() for c in columns), strict=True)):
            yield {
                "user": u,
                "item": f"i{i}",
                "ts": t,
                "event_id": f"e{first + k}",
                "context": {"device": DEVICES[d], "hour": h},
            }


def write_jsonl(path: str | os.PathLike[str], events: Iterable[Mapping[str, Any]]) -> int:
    """Write `events` as JSON lines (gzip when `path` ends with .gz); return how many."""
    path = os.fspath(path)
    count = 0
    with gzip.open(path, "wb", compresslevel=5) if path.endswith(".gz") else open(path, "wb") as f:
        lines = []
        for event in events:
            lines.append(encode(event))
            if len(lines) == 10_000:
                f.write(b"\n".join(lines) + b"\n")
                count += len(lines)
                lines = []
        if lines:
            f.write(b"\n".join(lines) + b"\n")
            count += len(lines)
    return count
