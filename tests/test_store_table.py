"""Exact top-k and the retention rules: pure logic, no Redis."""

from __future__ import annotations

import numpy as np
import pytest

from store.retention import expired
from store.table import Table, top_rows


def reference(scores: np.ndarray, k: int) -> list[int]:
    """Highest score first, lower row first among equal scores."""
    return np.lexsort((np.arange(len(scores)), -scores))[:k].tolist()


@pytest.mark.parametrize("n", [1, 5, 100, 5_000, 200_000])
@pytest.mark.parametrize("k", [1, 3, 10, 100, 7_000])
def test_top_rows_is_exact(n, k):
    rng = np.random.default_rng(n * 31 + k)
    scores = rng.standard_normal(n, dtype=np.float32)
    assert top_rows(scores, k).tolist() == reference(scores, k)


def test_top_rows_with_many_ties_and_minus_inf():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, 100_000).astype(np.float32)  # four distinct values only
    scores[rng.integers(0, 100_000, 5_000)] = -np.inf
    for k in (1, 10, 1_000, 30_000):
        assert top_rows(scores, k).tolist() == reference(scores, k)


def test_top_k_excludes_and_checks_the_query():
    matrix = np.arange(12, dtype=np.float32).reshape(6, 2)  # scores rise with the row
    table = Table(version=3, ids=[f"i{r}" for r in range(6)], matrix=matrix)
    assert [r["item"] for r in table.top_k(np.ones(2), k=2)] == ["i5", "i4"]
    got = table.top_k(np.ones(2), k=3, exclude=["i5", "i3", "nope"])
    assert got == [{"item": "i4", "score": 17.0}, {"item": "i2", "score": 9.0},
                   {"item": "i1", "score": 5.0}]  # fmt: skip
    assert len(table.top_k(np.ones(2), k=10, exclude=["i0"])) == 5  # fewer than k left
    with pytest.raises(ValueError, match=r"expected \(2,\).*dim 2"):
        table.top_k(np.ones(3))
    with pytest.raises(ValueError, match="not finite"):
        table.top_k(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        table.top_k(np.ones(2), k=0)


def test_int_ids_in_exclude_match_their_string_form():
    table = Table(version=1, ids=["7", "8"], matrix=np.array([[2.0], [1.0]], np.float32))
    assert [r["item"] for r in table.top_k(np.ones(1), k=2, exclude=[7])] == ["8"]


def _expired(**kw):
    args = dict(recorded=set(), retired={}, current=None, present=set(), keep=2,
                grace_ms=1_000, now_ms=10_000)  # fmt: skip
    args.update(kw)
    return expired(**args)


def test_retention_keeps_current_newest_and_recently_retired():
    recorded = {1, 2, 3, 4, 5}
    retired = {1: 1_000, 2: 2_000, 3: 9_500, 4: 9_800}  # 3 and 4 retired < 1 s ago
    assert _expired(recorded=recorded, retired=retired, current=5, present=recorded) == [1, 2]
    # grace 0: everything beyond the newest two goes at once
    assert _expired(recorded=recorded, retired=retired, current=5, grace_ms=0) == [1, 2, 3]
    # after a forced move back to 1, the current version is kept whatever its age
    assert _expired(recorded=recorded, retired={2: 0, 3: 0}, current=1, grace_ms=0) == [2, 3]


def test_retention_never_current_and_leftover_versions():
    # 2 was recorded but never current (an older publish lost the race): nobody read it
    assert _expired(recorded={2, 5, 6}, current=6, keep=1) == [2, 5]
    # keys of 3 (never recorded: a publish died before its flip) go; 9 may be under way
    assert _expired(recorded={6}, current=6, present={3, 6, 9}, keep=1) == [3]
    assert _expired(recorded=set(), current=None, present={3}) == []
