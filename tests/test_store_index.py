"""The approximate index and precomputed top-N against a real Redis: built and calibrated by the
writer, loaded (not built) by readers, moved with each delta, never mixed across versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from store import Reader, Snapshot, StoreError, Writer
from store.draft import Settings
from store.ivf import nlist_for

pytest.importorskip("faiss")

DIM = 17


def clustered(version: int, n: int = 30_000, users: int = 200, seed: int = 0) -> Snapshot:
    """Items around 300 taste centres (bias last), users near them; stamps all at `version`."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, DIM - 1)).astype(np.float32)
    items = np.empty((n, DIM), np.float32)
    items[:, :-1] = centres[rng.integers(0, 300, n)] + 0.5 * rng.standard_normal((n, DIM - 1))
    items[:, -1] = rng.standard_normal(n)
    people = np.ones((users, DIM), np.float32)
    people[:, :-1] = 0.5 * centres[rng.integers(0, 300, users)]
    return Snapshot(
        version=version,
        created_ms=0,
        item_ids=[f"i{j}" for j in range(n)],
        item_vectors=items,
        user_ids=[f"u{u}" for u in range(users)],
        user_vectors=people,
        user_stamps=np.full(users, version),
        stamp=version,
        item_stamps=np.full(n, version),
    )


def same(got: list[dict], want: list[dict]) -> bool:
    """Same items in order, scores equal to float precision (a batched product may round
    differently from one query's)."""
    return [r["item"] for r in got] == [r["item"] for r in want] and np.allclose(
        [r["score"] for r in got], [r["score"] for r in want], rtol=1e-5
    )


def recall(reader: Reader, users: list[str], k: int = 100) -> float:
    hits = 0
    for u in users:
        want = {r["item"] for r in reader.recommend(u, k)}
        hits += len(want & {r["item"] for r in reader.recommend(u, k, exact=False)})
    return hits / (k * len(users))


@pytest.mark.slow
def test_the_writer_calibrates_the_index_and_readers_load_it(redis_url, namespace):
    settings = Settings(index="ivf", index_recall=0.95, delta_share=1.0)
    writer = Writer.from_url(redis_url, namespace, grace_s=0, settings=settings)
    reader = Reader.from_url(redis_url, namespace)
    snap = clustered(1)
    writer.publish(snap)
    meta = reader.meta()
    assert meta["index"] == "ivf" and int(meta["index_nlist"]) == nlist_for(30_000)
    assert float(meta["index_recall"]) >= 0.95
    assert 1 <= int(meta["index_nprobe"]) < int(meta["index_nlist"])  # not a full scan
    users = [f"u{u}" for u in range(100, 140)]  # not the writer's calibration sample only
    assert recall(reader, users) >= 0.9
    approx = reader.recommend("u3", 10, exact=False)
    exact = {r["item"]: r["score"] for r in reader.recommend("u3", 200)}
    for r in approx:  # re-scored exactly: the scores are the table's
        assert r["score"] == pytest.approx(exact[r["item"]], rel=1e-6)
    assert reader.cache.copy.ivf.index.ntotal == 30_000

    # a delta: one item made everyone's best, one removed; the index moves with the table
    items = snap.item_vectors.copy()
    items[7] = 0
    items[7, -1] = 1_000
    stamps = np.full(len(items), 1)
    stamps[[7, 8]] = 2
    keep = np.arange(len(items)) != 9
    top = reader.recommend("u5", 1, exact=False)[0]["item"]
    delta = Snapshot(
        version=2,
        created_ms=0,
        item_ids=[i for i, k in zip(snap.item_ids, keep, strict=True) if k],
        item_vectors=items[keep],
        user_ids=snap.user_ids,
        user_vectors=snap.user_vectors,
        user_stamps=np.full(len(snap.user_ids), 2),
        stamp=2,
        item_stamps=stamps[keep],
    )
    writer.publish(delta)
    assert reader.meta()["chain"] == "2,1"
    assert reader.recommend("u5", 1, exact=False)[0] == {"item": "i7", "score": 1000.0}
    assert reader.cache.switches[-1][1] == "delta"
    assert reader.cache.copy.ivf.index.ntotal == 30_000 - 1
    everything = reader.recommend_vector(np.ones(DIM), k=30_000, exact=False)
    assert "i9" not in {r["item"] for r in everything}
    assert reader.recommend("u5", 2, exact=False, exclude=["i7"])[0]["item"] != "i7"
    fresh = Reader.from_url(redis_url, namespace)  # loads full + delta, builds the lists
    assert fresh.recommend("u5", 5, exact=False) == reader.recommend("u5", 5, exact=False)
    assert top  # the version before answered too


def test_no_index_means_exact_only(redis_url, namespace):
    writer = Writer.from_url(redis_url, namespace, settings=Settings(index="none"))
    writer.publish(clustered(1, n=500, users=20))
    reader = Reader.from_url(redis_url, namespace)
    assert reader.meta()["index"] == ""
    with pytest.raises(StoreError, match="no approximate index"):
        reader.recommend("u1", 5, exact=False)
    auto = Writer.from_url(redis_url, namespace, settings=Settings(index="auto"))
    auto.publish(clustered(2, n=500, users=20))
    assert reader.meta()["index"] == ""  # too small to index


@pytest.mark.parametrize("index", ["none", "ivf"])
def test_top_n_lists_match_recommend_and_inactive_users_carry_over(redis_url, namespace, index):
    settings = Settings(index=index, top_n=10, top_n_exact=True, delta_share=1.0)
    writer = Writer.from_url(redis_url, namespace, settings=settings)
    reader = Reader.from_url(redis_url, namespace)
    snap = clustered(1, n=3000, users=50)
    writer.publish(snap)
    assert reader.meta()["top_n"] == "10"
    for u in ("u0", "u17"):
        assert same(reader.top_n(u), reader.recommend(u, 10))
    assert reader.top_n("nobody") is None
    # version 2: items 0-99 change, only users 0-9 were active
    items = snap.item_vectors.copy()
    items[:100, -1] += 5
    stamps = np.where(np.arange(3000) < 100, 2, 1)
    users = snap.user_vectors.copy()
    users[:, 0] += 1
    user_stamps = np.where(np.arange(50) < 10, 2, 1)
    writer.publish(
        Snapshot(
            2,
            0,
            snap.item_ids,
            items,
            snap.user_ids,
            users,
            user_stamps=user_stamps,
            stamp=2,
            item_stamps=stamps,
        )
    )
    assert reader.meta()["base"] == "1" and reader.meta()["users_base"] == "1"
    assert same(reader.top_n("u3"), reader.recommend("u3", 10))  # recomputed
    old = reader.top_n("u30")  # carried over from version 1, as its vector is
    assert old == json.loads(writer.client.hget(writer.layout.topn(1), "u30"))
    assert [r["item"] for r in old] != [r["item"] for r in reader.recommend("u30", 10)]
