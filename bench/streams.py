"""Synthetic streams for the benchmarks, as integer columns with their hidden truth.

Every stream is relabelled so that a user's (an item's) id is the order of its first
appearance: id == the row a streaming vocabulary gives it, so every model and the harness agree
on rows without a lookup, and "seen so far" is simply `id < n_seen`.

- `trending`: taste clusters, Zipf popularity, a hot set per phase (popularity drift), users
  and items arriving over time (cold start). The main comparison runs on it.
- `grouped`: K disjoint groups (affinity 1, no drift): the folding stream.
- `contextual`: the item depends on a context field as much as on the user: the query-feature
  stream; without the field a model can only learn the user's mix over modes.

The realistic ratings stream (the regime real data is in) has its own module: `bench.ratings`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000
START_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Stream:
    """Events in time order. `user_cluster`/`item_cluster` are indexed by (relabelled) id."""

    name: str
    users: np.ndarray  # int64 ids, 0.. in order of first appearance
    items: np.ndarray  # int64 ids, 0.. in order of first appearance
    ts: np.ndarray  # int64 epoch ms, non-decreasing
    user_cluster: np.ndarray
    item_cluster: np.ndarray
    context: np.ndarray | None = None  # int64 context value per event, when the stream has one

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.user_cluster)

    @property
    def n_items(self) -> int:
        return len(self.item_cluster)

    def prior_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """For each event: how many earlier events its user had, and its item had."""
        return _cumcount(self.users), _cumcount(self.items)


def _cumcount(ids: np.ndarray) -> np.ndarray:
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    run = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
    out = np.empty(len(ids), dtype=np.int64)
    out[order] = run
    return out


def _first_appearance(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(new ids of the events, new id of each old id or -1 if never seen)."""
    uniq, first = np.unique(ids, return_index=True)
    order = uniq[np.argsort(first, kind="stable")]
    relabel = np.full(n, -1, dtype=np.int64)
    relabel[order] = np.arange(len(order))
    return relabel[ids], relabel


def _finish(
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    user_cluster: np.ndarray,
    item_cluster: np.ndarray,
    context: np.ndarray | None = None,
) -> Stream:
    u, umap = _first_appearance(users, len(user_cluster))
    i, imap = _first_appearance(items, len(item_cluster))
    uc = np.empty(int(u.max()) + 1, np.int64)
    uc[umap[umap >= 0]] = user_cluster[umap >= 0]
    ic = np.empty(int(i.max()) + 1, np.int64)
    ic[imap[imap >= 0]] = item_cluster[imap >= 0]
    return Stream(name, u, i, ts, uc, ic, context)


def _draw_in_blocks(
    rng: np.random.Generator, weights: np.ndarray, block: np.ndarray, want: np.ndarray
) -> np.ndarray:
    """For each entry of `want` (a block id), one item drawn ∝ `weights` among its block."""
    order = np.argsort(block, kind="stable")
    nblocks = int(block.max()) + 1
    counts = np.bincount(block, minlength=nblocks)
    ends = np.cumsum(counts)
    cdf = np.empty(len(order))
    for b in range(nblocks):
        lo, hi = ends[b] - counts[b], ends[b]
        if hi > lo:
            w = np.cumsum(weights[order[lo:hi]])
            cdf[lo:hi] = b + (w / w[-1] if w[-1] > 0 else np.linspace(0, 1, hi - lo + 1)[1:])
            cdf[hi - 1] = b + 1.0
    at = np.searchsorted(cdf, want + rng.random(len(want)), side="right")
    at = np.minimum(at, ends[want] - 1)
    return order[at]


def trending(
    events: int,
    users: int,
    items: int,
    clusters: int = 16,
    affinity: float = 0.85,
    phases: int = 20,
    hot_share: float = 0.35,
    zipf: float = 1.05,
    days: float = 20.0,
    seed: int = 0,
) -> Stream:
    """Clusters + Zipf + a hot set that changes every phase; users and items arrive over time.

    In phase p, a quarter of the users and half of the items exist at the start and the rest
    arrive linearly; items released in phase p are part of its hot set (new releases trend), as
    are some random older items. A `hot_share` of events picks from the hot set of the user's
    own cluster, the rest from the cluster's (or, with 1 - affinity, any) released items.
    """
    rng = np.random.default_rng([seed, 11])
    user_cluster = rng.integers(0, clusters, users)
    item_cluster = rng.integers(0, clusters, items)
    base = np.power(rng.permutation(items) + 1.0, -zipf)
    release = np.where(
        rng.random(items) < 0.5, 0, rng.integers(0, phases, items)
    )  # phase at which an item exists
    per = np.diff(np.linspace(0, events, phases + 1).astype(np.int64))
    out_u, out_i = [], []
    for p, n in enumerate(per):
        frac = (p + 1) / phases
        active_users = max(1, int(users * (0.25 + 0.75 * frac)))
        u = rng.integers(0, active_users, n)
        released = release <= p
        hot = released & ((release == p) | (rng.random(items) < 0.01))
        w_all = np.where(released, base, 0.0)
        w_hot = np.where(hot, base + base.max() * 0.02, 0.0)
        own = rng.random(n) < affinity
        from_hot = own & (rng.random(n) < hot_share)
        cluster = user_cluster[u]
        i = np.empty(n, np.int64)
        k = ~own
        i[k] = _draw_in_blocks(rng, w_all, np.zeros(items, np.int64), np.zeros(k.sum(), np.int64))
        k = own & ~from_hot
        i[k] = _draw_in_blocks(rng, w_all, item_cluster, cluster[k])
        i[from_hot] = _draw_in_blocks(rng, w_hot, item_cluster, cluster[from_hot])
        out_u.append(u)
        out_i.append(i)
    ts = START_MS + np.linspace(0, days * DAY_MS, events).astype(np.int64)
    return _finish(
        "trending", np.concatenate(out_u), np.concatenate(out_i), ts, user_cluster, item_cluster
    )


def grouped(
    events: int, users: int, items: int, groups: int = 8, zipf: float = 1.05, seed: int = 0
) -> Stream:
    """K disjoint groups: a user only ever touches items of its own group."""
    rng = np.random.default_rng([seed, 12])
    user_cluster = rng.integers(0, groups, users)
    item_cluster = rng.integers(0, groups, items)
    base = np.power(rng.permutation(items) + 1.0, -zipf)
    u = rng.integers(0, users, events)
    i = _draw_in_blocks(rng, base, item_cluster, user_cluster[u])
    ts = START_MS + np.arange(events, dtype=np.int64) * 1000
    return _finish("grouped", u, i, ts, user_cluster, item_cluster)


def contextual(
    events: int,
    users: int,
    items: int,
    clusters: int = 8,
    modes: int = 4,
    zipf: float = 1.05,
    seed: int = 0,
) -> Stream:
    """The item comes from the block (user's cluster, event's mode); `context` holds the mode.

    A user's events spread evenly over the modes, so a model that ignores the mode can at best
    spread its recommendations over the user's `modes` blocks.
    """
    rng = np.random.default_rng([seed, 13])
    user_cluster = rng.integers(0, clusters, users)
    item_block = rng.integers(0, clusters * modes, items)
    base = np.power(rng.permutation(items) + 1.0, -zipf)
    u = rng.integers(0, users, events)
    mode = rng.integers(0, modes, events)
    i = _draw_in_blocks(rng, base, item_block, user_cluster[u] * modes + mode)
    ts = START_MS + np.arange(events, dtype=np.int64) * 1000
    return _finish("contextual", u, i, ts, user_cluster, item_block // modes, mode)


def catalogue_stream(
    events: int, items: int, users: int, zipf: float = 1.05, seed: int = 0
) -> Stream:
    """Plain Zipf over a catalogue of `items`, with every item present: for scalability runs.

    The first `items` events touch each item once (so the catalogue is whole), then Zipf.
    """
    rng = np.random.default_rng([seed, 14])
    base = np.power(rng.permutation(items) + 1.0, -zipf)
    cdf = np.cumsum(base)
    cdf /= cdf[-1]
    zipf_items = np.minimum(np.searchsorted(cdf, rng.random(events), side="right"), items - 1)
    i = np.concatenate([rng.permutation(items), zipf_items])
    u = rng.integers(0, users, len(i))
    ts = START_MS + np.arange(len(i), dtype=np.int64) * 10
    return _finish("catalogue", u, i, ts, np.zeros(users, np.int64), np.zeros(items, np.int64))
