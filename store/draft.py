"""What the writer puts under a new version: full or delta, rows, item hash, index (no I/O).

`Published` is the writer's memory of the version it made current last: the table's layout
(`store.delta.Slots`), the IVF centroids and each slot's list, the chain. With it, and a snapshot
whose `item_stamps` say which rows changed, `draft` makes a delta; without it (a writer just
started, a pointer someone else moved), or when the chain is long (`compact_every` deltas) or
heavy (its deltas' rows and the holes past `delta_share` of the table), a full version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from store import ivf
from store.delta import Plan, Slots
from store.snapshot import Snapshot

log = logging.getLogger(__name__)

_QUERIES = 128  # users the writer measures the index's recall on


@dataclass(frozen=True)
class Settings:
    compact_every: int = 10  # deltas between full versions (0: every version is full)
    delta_share: float = 0.25  # compact when the chain's delta rows + holes pass this share
    index: str = "auto"  # "ivf", "none", or "auto": ivf for ≥ ivf.MIN_ITEMS items with faiss
    index_recall: float = 0.95  # the recall@100 the writer picks nprobe for
    top_n: int = 0  # precomputed top-N lists per user (0: none)
    top_n_exact: bool = False  # top-N by exact scan even when the version has an index

    def __post_init__(self) -> None:
        if self.index not in ("auto", "ivf", "none"):
            raise ValueError(f"index must be 'auto', 'ivf' or 'none', got {self.index!r}")
        if not 0 <= self.delta_share <= 1 or not 0 < self.index_recall <= 1:
            raise ValueError("delta_share must be in [0, 1] and index_recall in (0, 1]")
        if self.compact_every < 0 or self.top_n < 0:
            raise ValueError("compact_every and top_n must be >= 0")


@dataclass
class Published:
    """What the writer published last (made current)."""

    version: int
    checksum: str
    stamp: int
    dim: int
    chunk_rows: int
    chain: list[int]
    slots: Slots
    delta_rows: int = 0  # rows the chain's deltas hold
    lists: np.ndarray | None = None  # int32 IVF list per slot (-1: hole)
    centroids: np.ndarray | None = None
    nprobe: int = 0
    trained_nprobe: int = 0  # nprobe when the centroids were trained: drift shows as growth


@dataclass
class Draft:
    """A version to write. Its own rows are `vectors` (of `ids`), going to table `slots`."""

    snap: Snapshot
    base: Published | None  # the version a delta applies to (None: full)
    ids: list[str]
    vectors: np.ndarray
    slots: np.ndarray
    removed: np.ndarray  # slots emptied (a delta)
    removed_ids: list[str]
    size: int  # table slots afterwards
    items: int  # items afterwards
    plan: Plan | None = None
    lists: np.ndarray | None = None
    centroids: np.ndarray | None = None
    nprobe: int = 0
    recall: float = float("nan")
    trained_nprobe: int = 0
    index: ivf.IVF | None = None  # the index the writer calibrated (kept only for top-N)

    @property
    def full(self) -> bool:
        return self.base is None

    @property
    def chain(self) -> list[int]:
        return [self.snap.version, *(self.base.chain if self.base else [])]

    def after(self, chunk_rows: int) -> Published:
        """The writer's memory once this draft is current."""
        snap, base = self.snap, self.base
        if base is None:
            slots, lists, delta_rows = Slots.dense(snap.item_ids), self.lists, 0
        else:
            assert self.plan is not None
            slots, lists, delta_rows = base.slots, base.lists, base.delta_rows + len(self.ids)
            slots.apply(self.plan, snap.item_ids)
            if lists is not None and self.lists is not None:
                grown = np.full(self.size, -1, np.int32)
                grown[: len(lists)] = lists
                grown[self.removed] = -1
                grown[self.slots] = self.lists
                lists = grown
        return Published(
            version=snap.version,
            checksum=snap.digest,
            stamp=snap.stamp,
            dim=snap.dim,
            chunk_rows=chunk_rows,
            chain=self.chain,
            slots=slots,
            delta_rows=delta_rows,
            lists=lists,
            centroids=self.centroids if base is None else base.centroids,
            nprobe=self.nprobe,
            trained_nprobe=self.trained_nprobe,
        )


def draft(snap: Snapshot, prior: Published | None, s: Settings) -> Draft:
    """A delta on `prior` when the rules allow, else a full version."""
    why = _no_delta(snap, prior, s)
    if why is None:
        assert prior is not None and snap.item_stamps is not None
        plan = prior.slots.plan(snap.item_ids, snap.item_stamps > prior.stamp)
        holes = plan.size - len(snap.item_ids)  # the snapshot's items are the live ones
        heavy = prior.delta_rows + len(plan.rows) + holes > s.delta_share * plan.size
        if not heavy:
            return _delta(snap, prior, plan)
        why = "the chain's deltas would pass --delta-share of the table"
    log.info("version %d is full: %s", snap.version, why)
    return _full(snap, prior, s)


def _no_delta(snap: Snapshot, prior: Published | None, s: Settings) -> str | None:
    if prior is None:
        return "no version of this writer is current (first publish, or the writer restarted)"
    if len(prior.chain) > s.compact_every:
        return f"{len(prior.chain) - 1} deltas since the last full version (--compact-every)"
    if snap.item_stamps is None:
        return "the snapshot has no item stamps"
    if snap.stamp < prior.stamp or snap.dim != prior.dim:
        return "the snapshot is not a successor of the current version"
    if (prior.centroids is not None) != _indexed(len(snap.item_ids), s):
        return "the index setting changed"
    return None


def _indexed(items: int, s: Settings) -> bool:
    if s.index == "auto":
        return items >= ivf.MIN_ITEMS and ivf.available()
    return s.index == "ivf" and items > 0


def _delta(snap: Snapshot, prior: Published, plan: Plan) -> Draft:
    rows = plan.rows
    vectors = snap.item_vectors[rows]
    d = Draft(
        snap=snap,
        base=prior,
        ids=[snap.item_ids[r] for r in rows.tolist()],
        vectors=vectors,
        slots=plan.slots,
        removed=plan.removed,
        removed_ids=prior.slots.removed_ids(plan),
        size=plan.size,
        items=len(snap.item_ids),
        plan=plan,
        nprobe=prior.nprobe,
        trained_nprobe=prior.trained_nprobe,
    )
    if prior.centroids is not None:
        d.lists = ivf.assign(prior.centroids, vectors)
    return d


def _full(snap: Snapshot, prior: Published | None, s: Settings) -> Draft:
    n = len(snap.item_ids)
    d = Draft(
        snap=snap,
        base=None,
        ids=snap.item_ids,
        vectors=snap.item_vectors,
        slots=np.arange(n, dtype=np.int64),
        removed=np.empty(0, np.int64),
        removed_ids=[],
        size=n,
        items=n,
    )
    if _indexed(n, s):
        _index(d, prior, s)
    return d


def _index(d: Draft, prior: Published | None, s: Settings) -> None:
    """Centroids (the prior's, while they serve), lists, and the calibrated nprobe."""
    snap, queries = d.snap, _queries(d.snap)
    reuse = prior is not None and prior.centroids is not None and prior.dim == snap.dim
    if reuse:
        assert prior is not None and prior.centroids is not None and prior.lists is not None
        known = prior.slots.slots_of(snap.item_ids)
        stale = known < 0
        if snap.item_stamps is not None:
            stale |= snap.item_stamps > prior.stamp
        else:
            stale[:] = True
        lists = np.where(stale, 0, prior.lists[np.maximum(known, 0)]).astype(np.int32)
        lists[stale] = ivf.assign(prior.centroids, snap.item_vectors[stale])
        d.centroids, d.lists = prior.centroids, lists
        d.nprobe, d.recall = _calibrate(d, queries, s)
        d.trained_nprobe = prior.trained_nprobe
        if d.nprobe <= 2 * max(1, prior.trained_nprobe):
            return
        log.info("the index drifted (nprobe %d for recall %.2f): retraining", d.nprobe, d.recall)
    d.centroids = ivf.train(snap.item_vectors, ivf.nlist_for(len(snap.item_ids)), snap.version)
    d.lists = ivf.assign(d.centroids, snap.item_vectors)
    d.nprobe, d.recall = _calibrate(d, queries, s)
    d.trained_nprobe = d.nprobe


def _calibrate(d: Draft, queries: np.ndarray, s: Settings) -> tuple[int, float]:
    assert d.centroids is not None and d.lists is not None
    d.index = ivf.IVF(d.centroids)
    d.index.add(d.vectors, d.lists, d.slots)
    d.index.set_head(d.vectors, d.slots)
    return ivf.calibrate(d.index, d.vectors, queries, s.index_recall)


def _queries(snap: Snapshot) -> np.ndarray:
    """Up to _QUERIES of the snapshot's users; items with a 1 for the bias if it has few."""
    rng = np.random.default_rng(snap.version)
    if len(snap.user_ids) >= 16:
        pick = rng.choice(len(snap.user_ids), min(_QUERIES, len(snap.user_ids)), replace=False)
        return snap.user_vectors[np.sort(pick)]
    pick = rng.choice(len(snap.item_ids), min(_QUERIES, len(snap.item_ids)), replace=False)
    queries = snap.item_vectors[np.sort(pick)].copy()
    queries[:, -1] = 1.0
    return queries
