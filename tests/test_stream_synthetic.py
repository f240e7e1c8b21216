"""The synthetic stream: deterministic, ordered in time, faithful to its hidden truth."""

from __future__ import annotations

import time
from collections import Counter
from itertools import islice, pairwise
from pathlib import Path

import pytest

from stream.event import Decoder
from stream.files import FileSource
from stream.synthetic import World, generate, write_jsonl

WORLD = World(users=500, items=400, clusters=4, affinity=0.8, zipf=1.1, seed=7)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first = list(generate(WORLD, 2000, start_ms=0))
    assert first == list(generate(WORLD, 2000, start_ms=0))
    other = World(users=500, items=400, clusters=4, seed=8)
    assert [e["item"] for e in generate(other, 2000, start_ms=0)] != [e["item"] for e in first]


def test_truth_is_deterministic_and_balanced() -> None:
    twin = World(users=500, items=400, clusters=4, seed=7)
    assert [WORLD.user_cluster(u) for u in range(500)] == [twin.user_cluster(u) for u in range(500)]
    assert set(Counter(WORLD.user_cluster(u) for u in range(500)).values()) == {125}
    assert set(Counter(WORLD.item_cluster(f"i{n}") for n in range(400)).values()) == {100}
    assert WORLD.user_cluster("17") == WORLD.user_cluster(17)


def test_timestamps_strictly_increase_and_end_about_now() -> None:
    events = list(generate(WORLD, 3000, gap_ms=250))
    ts = [e["ts"] for e in events]
    assert all(b - a == 250 for a, b in pairwise(ts))
    assert 0 <= time.time() * 1000 - ts[-1] < 5_000
    assert [e["event_id"] for e in events[:3]] == ["e0", "e1", "e2"]
    assert len({e["event_id"] for e in events}) == 3000


def test_events_have_the_documented_shape_and_decode() -> None:
    decoder = Decoder()
    for event in islice(generate(WORLD, 100), 100):
        assert isinstance(event["user"], int) and 0 <= event["user"] < 500
        assert event["item"].startswith("i") and 0 <= int(event["item"][1:]) < 400
        assert event["context"]["device"] in {"mobile", "desktop", "tablet", "tv"}
        assert event["context"]["hour"] == (event["ts"] // 3_600_000) % 24
    assert decoder.decode(b'{"user":1,"item":"i1","ts":1}').user == "1"


def test_full_affinity_gives_disjoint_groups() -> None:
    world = World(users=300, items=200, clusters=5, affinity=1.0, seed=1)
    events = list(generate(world, 20_000, start_ms=0))
    assert all(world.user_cluster(e["user"]) == world.item_cluster(e["item"]) for e in events)
    assert {world.item_cluster(e["item"]) for e in events} == set(range(5))


def test_partial_affinity_mixes_in_the_catalogue() -> None:
    events = list(generate(WORLD, 20_000, start_ms=0))
    same = sum(WORLD.user_cluster(e["user"]) == WORLD.item_cluster(e["item"]) for e in events)
    # 0.8 from the own cluster plus 0.2 * 1/4 by chance
    assert same / len(events) == pytest.approx(0.85, abs=0.02)


def test_popularity_is_skewed() -> None:
    counts = Counter(e["item"] for e in generate(WORLD, 20_000, start_ms=0)).most_common()
    top = sum(c for _, c in counts[:20])  # 5% of the items
    assert top / 20_000 > 0.4
    assert counts[0][1] > 20 * counts[len(counts) // 2][1]
    users = Counter(e["user"] for e in generate(WORLD, 20_000, start_ms=0)).most_common()
    assert users[0][1] > 3 * users[len(users) // 2][1]  # activity skewed, mildly


def test_write_jsonl_plain_and_gzip_round_trip(tmp_path: Path) -> None:
    for name in ("ev.jsonl", "ev.jsonl.gz"):
        path = tmp_path / name
        assert write_jsonl(path, generate(WORLD, 25_001, start_ms=0)) == 25_001
        with FileSource(path, tmp_path / "dead.jsonl") as source:
            batch = source.poll(30_000, 0.0)
        assert len(batch.events) == 25_001 and batch.rejected == 0
        assert batch.events[-1].event_id == "e25000"


def test_a_million_events_in_a_few_seconds() -> None:
    world = World(users=100_000, items=1_000_000, seed=3)
    started = time.perf_counter()
    count = sum(1 for _ in generate(world, 1_000_000))
    assert count == 1_000_000
    assert time.perf_counter() - started < 10  # ~2 s here; generous for a noisy machine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0, "items": 10}, "users >= 1"),
        ({"users": 5, "items": 3, "clusters": 4}, "items >= clusters"),
        ({"users": 5, "items": 10, "affinity": 1.5}, "0 <= affinity <= 1"),
        ({"users": 5, "items": 10, "zipf": -1}, "zipf >= 0"),
    ],
)
def test_bad_worlds_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        World(**kwargs)


def test_bad_ids_and_gaps_are_refused() -> None:
    with pytest.raises(ValueError, match="item ids look like 'i<n>', got 'x1'"):
        WORLD.item_cluster("x1")
    with pytest.raises(ValueError, match="gap_ms must be >= 1"):
        next(generate(WORLD, 5, gap_ms=0))
