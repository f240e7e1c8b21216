"""Delta versions against a real Redis: what a delta holds, compaction, retention of the chain,
readers moving in place, and readers polling through 20 deltas and compactions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import redis

from store import NoVersion, Reader, Snapshot, Writer
from store.draft import Settings
from tests.faultkit import wait_until

DIM = 4


class World:
    """Items whose vectors change a few at a time; version v's snapshot is the world at v.

    Item "m" changes every version to [0, 0, 0, 100 + v]: every user's top item, with a score
    that names the version. Other items score below 10. Each version changes `share` of the
    items, removes two and adds two (stamps say which changed), and moves every user."""

    def __init__(self, items: int = 300, users: int = 4, share: float = 0.05, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.share = share
        self.items = {"m": np.zeros(DIM, np.float32)} | {
            f"i{j}": self._vector() for j in range(items)
        }
        self.stamps = dict.fromkeys(self.items, 0)
        self.users = [f"u{u}" for u in range(users)]
        self.next_id = items
        self.version = 0

    def _vector(self) -> np.ndarray:
        v = self.rng.uniform(-1, 1, DIM).astype(np.float32)
        v[-1] = self.rng.uniform(0, 1)
        return v

    def step(self) -> Snapshot:
        self.version = v = self.version + 1
        if v > 1:
            names = [i for i in self.items if i != "m"]
            for i in self.rng.choice(names, max(1, int(self.share * len(names))), replace=False):
                self.items[i], self.stamps[i] = self._vector(), v
            for i in self.rng.choice(names, 2, replace=False):
                del self.items[i], self.stamps[i]
            for _ in range(2):
                new = f"i{self.next_id}"
                self.next_id += 1
                self.items[new], self.stamps[new] = self._vector(), v
        self.items["m"] = np.array([0, 0, 0, 100 + v], np.float32)
        self.stamps["m"] = v
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        ids = list(self.items)
        users = np.ones((len(self.users), DIM), np.float32)
        users[:, 0] = 1 if self.version % 2 else -1
        return Snapshot(
            version=self.version,
            created_ms=0,
            item_ids=ids,
            item_vectors=np.stack([self.items[i] for i in ids]),
            user_ids=self.users,
            user_vectors=users,
            user_stamps=np.full(len(self.users), self.version),
            stamp=self.version,
            item_stamps=np.array([self.stamps[i] for i in ids]),
        )


def exact(snap: Snapshot, user: int, k: int) -> list[tuple[str, float]]:
    scores = snap.item_vectors @ snap.user_vectors[user]
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [(snap.item_ids[r], float(scores[r])) for r in order]


def settings(**kw) -> Settings:
    return Settings(**{"index": "none", "delta_share": 1.0, **kw})


def test_a_delta_holds_only_the_changed_rows_and_reads_as_the_whole_version(redis_url, namespace):
    world = World()
    writer = Writer.from_url(redis_url, namespace, chunk_rows=16, grace_s=0, settings=settings())
    reader = Reader.from_url(redis_url, namespace)
    first = world.step()
    writer.publish(first)
    assert reader.recommend("u0", k=1)[0] == {"item": "m", "score": 101.0}
    removed_before = set(first.item_ids)
    snap = world.step()
    writer.publish(snap)
    meta = reader.meta()
    changed = int((snap.item_stamps > first.stamp).sum())
    assert (meta["base"], meta["chain"], meta["rows"]) == ("1", "2,1", str(changed))
    assert 15 <= changed <= 18  # m, 5% of 300 (one may have left since), two new
    assert meta["removed"] == "2" and meta["items"] == str(len(snap.item_ids))
    gone = sorted(removed_before - set(snap.item_ids))
    vectors = reader.item_vectors([*snap.item_ids, *gone])
    assert set(vectors) == set(snap.item_ids)  # the removed ones are gone
    for row, item in enumerate(snap.item_ids):
        assert vectors[item].tobytes() == snap.item_vectors[row].tobytes(), item
    for user in range(4):
        got = [(r["item"], r["score"]) for r in reader.recommend(f"u{user}", 50)]
        want = exact(snap, user, 50)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-6)
    assert [kind for _, kind, _ in reader.cache.switches] == ["load", "delta"]  # in place
    fresh = Reader.from_url(redis_url, namespace)  # a new reader loads the chain
    assert fresh.recommend("u1", 50) == reader.recommend("u1", 50)
    assert fresh.recommend("u1", 5, exclude=["m", gone[0]])[0]["item"] != "m"


def test_compaction_every_k_deltas_and_when_a_delta_is_heavy(redis_url, namespace):
    world = World()
    writer = Writer.from_url(
        redis_url, namespace, grace_s=0, keep=1, settings=settings(compact_every=3)
    )
    kinds = []
    for _ in range(9):
        writer.publish(world.step())
        kinds.append(writer.last["kind"])
    assert kinds == ["full", "delta", "delta", "delta"] * 2 + ["full"]
    heavy = Writer.from_url(redis_url, namespace, settings=settings(delta_share=0.05))
    heavy.publish(world.step())  # a new writer knows no base: full
    world.share = 0.2
    heavy.publish(world.step())
    assert heavy.last["kind"] == "full"  # 20% changed > 5%
    world.share = 0.01
    heavy.publish(world.step())
    assert heavy.last["kind"] == "delta"


def test_cleanup_keeps_every_version_a_kept_one_is_made_of(redis_url, namespace):
    world = World()
    client = redis.Redis.from_url(redis_url)
    writer = Writer(client, namespace, keep=1, grace_s=0, settings=settings(compact_every=10))
    for _ in range(4):
        writer.publish(world.step())
    chain = [1, 2, 3, 4]  # 4 is a delta of 3, of 2, of 1: all stay, though keep=1
    assert writer.versions() == chain
    assert all(client.exists(writer.layout.meta(v)) for v in chain)
    snap = world.snapshot()
    reader = Reader(client, namespace)
    assert [r["item"] for r in reader.recommend("u2", 20)] == [i for i, _ in exact(snap, 2, 20)]
    writer.published = None  # as if the writer restarted: the next version is full
    writer.publish(world.step())
    assert writer.last["kind"] == "full"
    assert writer.versions() == [5]
    assert not any(client.exists(writer.layout.meta(v)) for v in chain)
    client.close()


def test_a_lost_base_makes_a_full_version(redis_url, namespace):
    world = World()
    writer = Writer.from_url(redis_url, namespace, settings=settings())
    writer.publish(world.step())
    writer.client.hset(writer.layout.meta(1), "checksum", "someone else's")
    writer.publish(world.step())
    assert writer.last["kind"] == "full"


@pytest.mark.slow
def test_readers_polling_through_20_deltas_and_compactions_never_see_a_mix(redis_url, namespace):
    world = World(items=2000, share=0.02)
    snaps = {}
    done, problems, seen = threading.Event(), [], []

    def poll() -> None:
        reader = Reader.from_url(redis_url, namespace)
        while not done.is_set():
            try:
                recs = reader.recommend("u1", k=8)
            except NoVersion:
                continue
            except Exception as e:  # any other error fails the test
                problems.append(repr(e))
                continue
            v = int(recs[0]["score"]) - 100  # m names the version that answered
            seen.append(v)
            want = exact(snaps[v], 1, 8)
            got = [(r["item"], r["score"]) for r in recs]
            if [i for i, _ in got] != [i for i, _ in want] or not np.allclose(
                [s for _, s in got], [s for _, s in want], rtol=1e-5
            ):
                problems.append(f"version {v}: {got} != {want}")
            try:
                vectors = reader.item_vectors(["m", "i0", "i1", "i2"])
            except Exception as e:
                problems.append(repr(e))
                continue
            w = int(vectors["m"][-1]) - 100
            for item, vec in vectors.items():
                row = snaps[w].item_ids.index(item)
                if vec.tobytes() != snaps[w].item_vectors[row].tobytes():
                    problems.append(f"{item} of version {w} differs")
        reader.switches = reader.cache.switches
        readers.append(reader)

    readers: list[Reader] = []
    threads = [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    writer = Writer.from_url(
        redis_url, namespace, chunk_rows=64, keep=1, grace_s=0, settings=settings(compact_every=8)
    )
    kinds = []
    try:
        for v in range(1, 22):
            snaps[v] = world.step()
            writer.publish(snaps[v])
            kinds.append(writer.last["kind"])
            if v % 3 == 0:  # now and then until the readers read it (they read more anyway)
                wait_until(lambda v=v: (seen and seen[-1] >= v) or problems, 20, f"version {v}")
            if problems:
                break
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not problems, problems[:5]
    assert kinds.count("full") >= 2 and kinds.count("delta") >= 18, kinds
    assert len(set(seen)) >= 5, set(seen)
    switched = [kind for r in readers for _, kind, _ in r.switches]
    assert "delta" in switched and "load" in switched, switched
