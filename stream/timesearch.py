"""Finding the offset of a time in one partition, by binary search over record timestamps.

Brokers answer ``ListOffsets`` by time, but not all of them correctly; reading the timestamps
of a few records works on every broker. `read(offset)` is a fetch: the (offset, timestamp)
pairs of the records from `offset` on, as many as one fetch brings, or none at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Read = Callable[[int], Sequence[tuple[int, int]]]


def first_offset_at(read: Read, start: int, end: int, ts_ms: int) -> int:
    """The first offset in [start, end) whose record timestamp is >= `ts_ms`, else `end`.

    Assumes timestamps are roughly non-decreasing in offset order; where they are not, the
    answer is an offset where they cross `ts_ms`. Every record of each fetch narrows the
    range, so a fetch that brings many records ends the search early.

    >>> log = [(o, 100 + 10 * o) for o in range(50)]  # offset, timestamp
    >>> first_offset_at(lambda o: log[o : o + 4], 0, 50, 255)
    16
    >>> first_offset_at(lambda o: log[o : o + 4], 0, 50, 10_000)
    50
    """
    lo, hi = start, end
    # Invariant: records before `lo` are older than ts_ms; the record at `hi`, if any, is not.
    while lo < hi:
        mid = (lo + hi) // 2
        records = [(offset, ts) for offset, ts in read(mid) if offset < hi]
        if not records:
            hi = mid  # nothing in [mid, hi): starting at mid reads the same as starting at hi
            continue
        first = next((i for i, (_, ts) in enumerate(records) if ts >= ts_ms), None)
        if first is None:
            lo = records[-1][0] + 1
        else:
            hi = records[first][0]
            if first:
                lo = max(lo, records[first - 1][0] + 1)
    return lo
