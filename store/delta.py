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


@dataclass
class Slots:
    """The layout of a published table: the id in each slot (None: a hole) and the free slots."""

    ids: list[str | None]
    slot_of: dict[str, int]
    free: list[int] = field(default_factory=list)  # a heap: the lowest free slot first

    @classmethod
    def dense(cls, ids: Sequence[str]) -> Slots:
        return cls(list(ids), {i: s for s, i in enumerate(ids)})

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def holes(self) -> int:
        return len(self.free)

    def plan(self, item_ids: Sequence[str], changed: np.ndarray) -> Plan:
        """The delta from this layout to a snapshot of `item_ids`, where `changed` marks the
        rows whose vector changed since the base (new ids count as changed whatever it says)."""
        get = self.slot_of.get
        known = np.fromiter((get(i, -1) for i in item_ids), np.int64, count=len(item_ids))
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
        return Plan(rows=rows, slots=slots, removed=removed, size=size)

    def apply(self, plan: Plan, item_ids: Sequence[str]) -> None:
        """Make this layout the one after `plan` (the snapshot's `item_ids`)."""
        for s in plan.removed.tolist():
            gone = self.ids[s]
            if gone is not None:
                del self.slot_of[gone]
            self.ids[s] = None
        self.ids.extend([None] * (plan.size - self.size))
        for r, s in zip(plan.rows.tolist(), plan.slots.tolist(), strict=True):
            self.ids[s] = item_ids[r]
            self.slot_of[item_ids[r]] = s
        taken = set(plan.slots.tolist())
        self.free = [s for s in {*self.free, *plan.removed.tolist()} if s not in taken]
        heapq.heapify(self.free)

    def removed_ids(self, plan: Plan) -> list[str]:
        """The ids of the slots `plan` empties (before it is applied)."""
        return [i for i in (self.ids[s] for s in plan.removed.tolist()) if i is not None]
