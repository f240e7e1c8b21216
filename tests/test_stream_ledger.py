"""Partition bookkeeping and the time search, without a broker."""

from __future__ import annotations

import pytest

from stream.errors import SourceError
from stream.event import Interaction
from stream.ledger import PartitionLedger
from stream.timesearch import first_offset_at


def events(*users: str) -> list[Interaction]:
    return [Interaction(u, "i", 1) for u in users]


def test_drain_joins_partitions_and_reports_next_offsets() -> None:
    ledger = PartitionLedger()
    ledger.start("t:0", 0, "log start")
    ledger.start("t:1", 10, "checkpoint")
    ledger.take("t:0", 0, 3, events("a", "b"), rejected=1)
    ledger.take("t:1", 10, 12, events("c", "d"), rejected=0)
    ledger.take("t:0", 3, 4, events("e"), rejected=0)
    assert ledger.pending == 5
    batch = ledger.drain()
    assert [e.user for e in batch.events] == ["a", "b", "c", "d", "e"]
    assert batch.offsets == {"t:0": 4, "t:1": 12} and batch.rejected == 1
    assert ledger.pending == 0 and ledger.drain().offsets == {}
    assert ledger.resume_point("t:1") == 12


def test_a_position_going_backwards_is_an_error() -> None:
    ledger = PartitionLedger()
    ledger.start("t:0", 5, "checkpoint")
    with pytest.raises(SourceError, match="t:0: got offset 2, expected 5"):
        ledger.take("t:0", 2, 3, [], 0)


def test_revoke_hands_over_only_the_revoked_partitions() -> None:
    ledger = PartitionLedger({"t:0": 0, "t:1": 0})
    ledger.start("t:0", 0, "x")
    ledger.start("t:1", 0, "x")
    ledger.take("t:0", 0, 2, events("a", "b"), rejected=0)
    ledger.take("t:1", 0, 3, events("c"), rejected=2)
    revoked = ledger.revoke({"t:1"}, handed_over=True)
    assert [e.user for e in revoked.events] == ["c"]
    assert (revoked.offsets, revoked.rejected) == ({"t:1": 3}, 2)
    assert "t:1" not in ledger.positions and ledger.resume_point("t:1") == 3
    rest = ledger.drain()
    assert [e.user for e in rest.events] == ["a", "b"] and rest.offsets == {"t:0": 2}


def test_revoke_without_owner_keeps_the_old_resume_point() -> None:
    ledger = PartitionLedger({"t:0": 4})
    ledger.start("t:0", 4, "checkpoint")
    ledger.take("t:0", 4, 9, events("a"), rejected=0)
    ledger.revoke({"t:0"}, handed_over=False)
    assert ledger.resume_point("t:0") == 4 and ledger.pending == 0


def fetcher(timestamps: list[int], per_fetch: int, base: int = 0):
    calls = []

    def read(offset: int) -> list[tuple[int, int]]:
        calls.append(offset)
        i = offset - base
        return [(base + j, timestamps[j]) for j in range(i, min(i + per_fetch, len(timestamps)))]

    return read, calls


@pytest.mark.parametrize("per_fetch", [1, 3, 50])
def test_time_search_finds_the_first_offset_at_or_after(per_fetch: int) -> None:
    timestamps = [10, 20, 20, 20, 30, 40, 40, 50]
    read, _ = fetcher(timestamps, per_fetch, base=100)
    got = {t: first_offset_at(read, 100, 108, t) for t in (0, 10, 15, 20, 21, 40, 50, 51)}
    assert got == {0: 100, 10: 100, 15: 101, 20: 101, 21: 104, 40: 105, 50: 107, 51: 108}


def test_time_search_takes_logarithmic_fetches() -> None:
    read, calls = fetcher(list(range(0, 2_000_000, 2)), per_fetch=1)
    assert first_offset_at(read, 0, 1_000_000, 777_777) == 388_889
    assert len(calls) <= 21


def test_time_search_over_gaps_and_empty_ranges() -> None:
    records = {0: 5, 1: 6, 7: 9, 8: 12}  # offsets 2..6 compacted away

    def read(offset: int) -> list[tuple[int, int]]:
        return [(o, t) for o, t in sorted(records.items()) if o >= offset][:2]

    assert first_offset_at(read, 0, 9, 9) in range(2, 8)  # any start before 7 reads 7 first
    assert first_offset_at(read, 0, 9, 10) == 8
    assert first_offset_at(read, 3, 3, 0) == 3
