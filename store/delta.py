"""Delta versions: which table rows a snapshot changes, and where they go (pure logic, no I/O).

A published table is a list of slots (rows). A full version lays the snapshot's items out in
order, slot = row. A delta keeps every slot of its base: an item that left empties its slot (a
hole), a changed item overwrites its own, a new item takes the lowest free slot (or a new one at
the end). The writer decides all of this and the delta names each row's slot, so a reader
applies it (`store.table.Table.apply`) without deciding anything.

>>> slots = Slots.dense(["a", "b", "c"])
>>> plan = slots.plan(["a", "c", "d"], changed=np.array([False, True, True]))
>>> plan.removed.tolist(), plan.rows.tolist(), plan.slots.tolist()
([1], [1, 2], [2, 1])
>>> slots.apply(plan, ["a", "c", "d"])
>>> slots.ids, slots.holes
(['a', 'd', 'c'], 0)
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Plan:
    """What a delta does to its base's table: `removed` slots are emptied first, then snapshot
    `rows` are written to `slots` (new items included)."""

    rows: np.ndarray  # int64: rows of the snapshot the delta carries, in snapshot order
    slots: np.ndarray  # int64: the table slot each of those rows goes to
    removed: np.ndarray  # int64: slots whose item is gone
    size: int  # slots of the table afterwards (holes included)
    known: np.ndarray  # int64: the slot of every snapshot row before the plan (-1: new)


@dataclass
class Slots:
    """The layout of a published table: the id in each slot (None: a hole) and the free slots."""

    ids: list[str | None]
    _slot_of: dict[str, int] | None = None  # built on first need (~1 s per million ids)
    free: list[int] = field(default_factory=list)  # a heap: the lowest free slot first
    # the last snapshot's ids and each one's slot: a snapshot that lists its ids in the same
    # order (a learner's, between evictions) is matched by position, ~20x faster than by id
    last_ids: Sequence[str] = ()
    last_slots: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @classmethod
    def dense(cls, ids: Sequence[str]) -> Slots:
        slots = cls(list(ids))
        slots.last_ids, slots.last_slots = ids, np.arange(len(ids), dtype=np.int64)
        return slots

    @property
    def slot_of(self) -> dict[str, int]:
        if self._slot_of is None:
            self._slot_of = {i: s for s, i in enumerate(self.ids) if i is not None}
        return self._slot_of

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def holes(self) -> int:
        return len(self.free)

    def plan(self, item_ids: Sequence[str], changed: np.ndarray) -> Plan:
        """The delta from this layout to a snapshot of `item_ids`, where `changed` marks the
        rows whose vector changed since the base (new ids count as changed whatever it says)."""
        known = self.slots_of(item_ids)
        seen = np.zeros(self.size, bool)
        seen[known[known >= 0]] = True
        live = np.ones(self.size, bool)
        live[self.free] = False
        removed = np.flatnonzero(live & ~seen)
        rows = np.flatnonzero((known < 0) | np.asarray(changed, bool))
        slots = known[rows].copy()
        new = np.flatnonzero(slots < 0)
        free = sorted([*self.free, *removed.tolist()])
        reuse = free[: len(new)]
        end = self.size + np.arange(len(new) - len(reuse))
        slots[new] = np.concatenate([np.asarray(reuse, np.int64), end]).astype(np.int64)
        size = self.size + max(0, len(new) - len(reuse))
        return Plan(rows=rows, slots=slots, removed=removed, size=size, known=known)

    def slots_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The slot of each id (-1: new): by position where the last snapshot had the same id
        there, else by a lookup."""
        n, m = len(item_ids), min(len(item_ids), len(self.last_ids))
        same = np.zeros(n, bool)
        if m:
            same[:m] = np.fromiter(map(operator.eq, item_ids[:m], self.last_ids[:m]), bool, count=m)
        known = np.full(n, -1, np.int64)
        known[same] = self.last_slots[:m][same[:m]]
        rest = np.flatnonzero(~same).tolist()
        if rest:
            get = self.slot_of.get
            for r in rest:
                known[r] = get(item_ids[r], -1)
        return known

    def apply(self, plan: Plan, item_ids: Sequence[str]) -> None:
        """Make this layout the one after `plan` (the snapshot's `item_ids`)."""
        index = self._slot_of
        for s in plan.removed.tolist():
            gone = self.ids[s]
            if gone is not None and index is not None:
                del index[gone]
            self.ids[s] = None
        self.ids.extend([None] * (plan.size - self.size))
        for r, s in zip(plan.rows.tolist(), plan.slots.tolist(), strict=True):
            self.ids[s] = item_ids[r]
            if index is not None:
                index[item_ids[r]] = s
        taken = set(plan.slots.tolist())
        self.free = [s for s in {*self.free, *plan.removed.tolist()} if s not in taken]
        heapq.heapify(self.free)
        self.last_ids, self.last_slots = item_ids, plan.known.copy()
        self.last_slots[plan.rows] = plan.slots

    def removed_ids(self, plan: Plan) -> list[str]:
        """The ids of the slots `plan` empties (before it is applied)."""
        return [i for i in (self.ids[s] for s in plan.removed.tolist()) if i is not None]
