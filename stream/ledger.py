"""Per-partition bookkeeping of a partitioned source, free of any client library.

The ledger knows, per position key, the next offset to read, the events decoded but not yet
returned, and the offsets already handed to the owner. It turns them into exact `Batch`es,
both at the end of a poll and when partitions are revoked in the middle of one.
"""

from __future__ import annotations

from stream.errors import SourceError
from stream.event import Interaction
from stream.source import Batch


class PartitionLedger:
    """Positions and pending records per position key.

    `delivered` starts as the trainer's checkpoint offsets and then follows every batch handed
    out, so a partition that comes back after a rebalance resumes where the owner's state is.

    >>> ledger = PartitionLedger({"t:0": 5})
    >>> ledger.resume_point("t:0"), ledger.resume_point("t:1")
    (5, None)
    >>> ledger.start("t:0", 5, "checkpoint")
    >>> ledger.take("t:0", 5, 8, [], rejected=3)
    >>> ledger.drain()
    Batch(events=[], offsets={'t:0': 8}, rejected=3)
    """

    def __init__(self, delivered: dict[str, int] | None = None) -> None:
        self.positions: dict[str, int] = {}  # next offset to read
        self.origins: dict[str, str] = {}  # where each starting offset came from
        self._delivered = dict(delivered or {})
        self._chunks: list[tuple[str, list[Interaction]]] = []
        self._advanced: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self.pending = 0  # valid events decoded but not yet returned

    def resume_point(self, key: str) -> int | None:
        """The next offset after what the owner has been handed, if it was handed any."""
        return self._delivered.get(key)

    def start(self, key: str, offset: int, origin: str) -> None:
        """Begin reading `key` at `offset`; `origin` explains the offset in error messages."""
        self.positions[key] = offset
        self.origins[key] = origin

    def take(
        self, key: str, first: int, next_offset: int, events: list[Interaction], rejected: int
    ) -> None:
        """Record a run of records `first`..`next_offset - 1` of `key`, decoded to `events`."""
        position = self.positions.get(key)
        if position is None or first < position:
            raise SourceError(
                f"{key}: got offset {first}, expected {position}: the consumer's position was"
                " reset (offset out of range after retention, or a re-created topic); restart"
                " from a checkpoint whose offsets are within the log"
            )
        self.positions[key] = self._advanced[key] = next_offset
        if events:
            self._chunks.append((key, events))
            self.pending += len(events)
        if rejected:
            self._rejected[key] = self._rejected.get(key, 0) + rejected

    def drain(self) -> Batch:
        """Everything pending, as one batch; the owner now holds it."""
        chunks = self._chunks
        events = chunks[0][1] if len(chunks) == 1 else [e for _, chunk in chunks for e in chunk]
        batch = Batch(events, self._advanced, sum(self._rejected.values()))
        self._delivered.update(batch.offsets)
        self._chunks, self._advanced, self._rejected, self.pending = [], {}, {}, 0
        return batch

    def revoke(self, keys: set[str], handed_over: bool) -> Batch:
        """Take the pending records of `keys` out and forget those partitions.

        `handed_over` says whether the owner receives the returned batch; if not, it is
        dropped and the partitions' next reader starts before it.
        """
        events: list[Interaction] = []
        kept = []
        for key, chunk in self._chunks:
            if key in keys:
                events.extend(chunk)
            else:
                kept.append((key, chunk))
        offsets = {key: self._advanced.pop(key) for key in keys if key in self._advanced}
        rejected = sum(self._rejected.pop(key, 0) for key in keys)
        for key in keys:
            self.positions.pop(key, None)
            self.origins.pop(key, None)
        self._chunks = kept
        self.pending -= len(events)
        if handed_over:
            self._delivered.update(offsets)
        return Batch(events, offsets, rejected)
