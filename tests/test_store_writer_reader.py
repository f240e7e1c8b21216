"""Writer and Reader against a real Redis: versions, exact top-k, consistency under publishing."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import redis

from store import (
    Layout,
    NoVersion,
    PublishError,
    Reader,
    Snapshot,
    StoreError,
    UnknownUser,
    Writer,
)
from tests.faultkit import wait_until

DIM = 9


def snapshot(version: int, n_items: int = 200, n_users: int = 20, seed: int = 0) -> Snapshot:
    rng = np.random.default_rng(seed * 1000 + version)
    return Snapshot(
        version=version,
        created_ms=1_700_000_000_000 + version,
        item_ids=["odd\nid", "ünï", *[f"item-{j}" for j in range(2, n_items)]],
        item_vectors=rng.standard_normal((n_items, DIM), dtype=np.float32),
        user_ids=[str(u) for u in range(n_users)],  # "0", "1", ...: found by int too
        user_vectors=rng.standard_normal((n_users, DIM), dtype=np.float32),
        extra={"model": "two-tower"},
    )


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def writer(client, namespace):
    return Writer(client, namespace, chunk_rows=7)  # many chunks, more than one load group


@pytest.fixture
def reader(redis_url, namespace):
    with Reader.from_url(redis_url, namespace) as r:
        yield r


def brute_force(snap: Snapshot, query: np.ndarray, k: int, exclude=()) -> list[str]:
    scores = snap.item_vectors @ query.astype(np.float32)
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [snap.item_ids[r] for r in order if snap.item_ids[r] not in set(exclude)][:k]


def test_publish_then_read_back_byte_exact(writer, reader):
    snap = snapshot(1)
    assert writer.publish(snap) == 1
    assert reader.version() == writer.current_version() == 1
    got = reader.item_vectors([*snap.item_ids, "missing"])
    assert set(got) == set(snap.item_ids)  # the missing id is omitted
    for row, item in enumerate(snap.item_ids):
        assert got[item].tobytes() == snap.item_vectors[row].tobytes()
    assert reader.user_vector(3).tobytes() == snap.user_vectors[3].tobytes()
    assert reader.user_vector("nobody") is None
    meta = reader.meta()
    assert (meta["dim"], meta["items"], meta["extra.model"]) == (str(DIM), "200", "two-tower")
    assert meta["checksum"] == snap.digest


def test_recommend_is_the_exact_top_k(writer, reader):
    snap = snapshot(1)
    writer.publish(snap)
    for user in range(5):
        query = snap.user_vectors[user]
        for k in (1, 10, 500):
            got = reader.recommend(user, k=k)  # int user id → "user"
            assert [r["item"] for r in got] == brute_force(snap, query, k)
        scores = snap.item_vectors @ query
        top = reader.recommend(str(user), k=3)
        row = snap.item_ids.index(top[0]["item"])
        assert top[0]["score"] == pytest.approx(float(scores[row]), rel=1e-6)
        assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]


def test_exclude_and_recommend_vector(writer, reader):
    snap = snapshot(1)
    writer.publish(snap)
    query = snap.user_vectors[0]
    first = [r["item"] for r in reader.recommend("0", k=5)]
    excluded = [r["item"] for r in reader.recommend("0", k=5, exclude=first[:3])]
    assert not set(first[:3]) & set(excluded)
    assert excluded == brute_force(snap, query, 5, exclude=first[:3])
    cold = np.ones(DIM, np.float32)
    assert [r["item"] for r in reader.recommend_vector(cold, k=7)] == brute_force(snap, cold, 7)
    with pytest.raises(ValueError, match=f"expected \\({DIM},\\)"):
        reader.recommend_vector(np.ones(DIM + 1))


def test_unknown_user_and_no_version(writer, reader):
    assert reader.version() is None
    for call in (lambda: reader.recommend("0"), lambda: reader.item_vectors(["x"])):
        with pytest.raises(NoVersion, match=f"{writer.layout.namespace!r}.*recstream publish"):
            call()
    writer.publish(snapshot(1))
    with pytest.raises(UnknownUser, match=r"'nobody'.*version 1"):
        reader.recommend("nobody")


def test_republishing_the_same_version_is_harmless_and_repairs(writer, reader, client):
    snap = snapshot(1)
    writer.publish(snap)
    layout = writer.layout
    stamp = client.hget(layout.meta(1), "published_ms")
    assert writer.publish(snap) == 1
    assert client.hget(layout.meta(1), "published_ms") == stamp  # nothing was rewritten
    client.hdel(layout.item(1), "item-5")  # damage it: the next publish rewrites it
    assert writer.publish(snap) == 1
    assert client.hlen(layout.item(1)) == 200
    assert reader.item_vectors(["item-5"])["item-5"].tobytes() == snap.item_vectors[5].tobytes()


def test_same_version_with_other_content_is_refused(writer, reader):
    writer.publish(snapshot(1))
    with pytest.raises(PublishError, match="already published with other content"):
        writer.publish(snapshot(1, seed=9))
    assert reader.version() == 1
    assert reader.user_vector(0).tobytes() == snapshot(1).user_vectors[0].tobytes()


def test_an_older_version_does_not_move_the_pointer_unless_forced(writer, reader, client):
    writer.publish(snapshot(2))
    assert writer.publish(snapshot(1)) == 2
    assert reader.version() == 2
    assert not client.exists(writer.layout.meta(1))  # skipped: nothing could read it
    assert writer.publish(snapshot(1), force=True) == 1
    assert reader.version() == 1
    assert reader.user_vector(0).tobytes() == snapshot(1).user_vectors[0].tobytes()


def version_keys(client, namespace: str, version: int) -> list[bytes]:
    return list(client.scan_iter(match=f"{namespace}:v:{version}:*"))


def test_old_versions_go_after_the_grace_period(client, namespace):
    patient = Writer(client, namespace, keep=2, grace_s=60)
    for v in (1, 2, 3):
        patient.publish(snapshot(v))
    assert version_keys(client, namespace, 1)  # retired < 60 s ago: kept
    assert patient.versions() == [1, 2, 3]
    hasty = Writer(client, namespace, keep=2, grace_s=0)
    hasty.publish(snapshot(4))
    assert hasty.versions() == [3, 4]
    assert not version_keys(client, namespace, 1) and not version_keys(client, namespace, 2)
    assert len(version_keys(client, namespace, 3)) == 3 + 2  # meta, item, user, 1 chunk


def test_failed_verification_leaves_the_pointer(writer, reader, client, monkeypatch):
    writer.publish(snapshot(1))
    write = writer._write

    def write_then_corrupt(d, existing, users=None):
        write(d, existing, users)
        client.setrange(writer.layout.matrix(d.snap.version, 3), 8, b"\x00\x00\xc0\x7f")

    monkeypatch.setattr(writer, "_write", write_then_corrupt)
    with pytest.raises(PublishError, match="matrix:3 differs"):
        writer.publish(snapshot(2))
    assert reader.version() == 1
    assert not client.exists(writer.layout.meta(2))  # incomplete: rewritten next time
    monkeypatch.undo()
    client.hset(writer.layout.item(2), "stray", b"x" * 36)  # leftovers must not survive
    assert writer.publish(snapshot(2)) == 2
    assert reader.item_vectors(["stray"]) == {}
    snap = snapshot(2)
    assert reader.recommend("0", k=3)[0]["item"] == brute_force(snap, snap.user_vectors[0], 1)[0]


def test_leftovers_of_a_dead_publish_are_swept(writer, client, namespace):
    layout = Layout(namespace)
    client.hset(layout.item(1), "a", b"1234")  # version 1 died before its flip
    client.set(layout.matrix(1, 0), b"...")
    client.set(f"{namespace}:v:1:not-ours", b"keep me")
    writer.publish(snapshot(2))
    assert version_keys(client, namespace, 1) == [f"{namespace}:v:1:not-ours".encode()]


class StalePointer(redis.Redis):
    """A client whose next GET of the pointer returns an old value, as a slow reader sees."""

    stale: bytes | None = None

    def get(self, name):
        if self.stale is not None and str(name).endswith(":current"):
            value, self.stale = self.stale, None
            return value
        return super().get(name)


def test_a_version_deleted_while_reading_is_retried_once(redis_url, client, namespace):
    writer = Writer(client, namespace, keep=1, grace_s=0)
    writer.publish(snapshot(1))
    writer.publish(snapshot(2))  # version 1 is deleted at once
    stale = StalePointer.from_url(redis_url)
    reader = Reader(stale, namespace)
    stale.stale = b"1"
    assert reader.user_vector(0).tobytes() == snapshot(2).user_vectors[0].tobytes()
    assert stale.stale is None
    stale.stale = b"1"
    top = reader.recommend(0, k=1)[0]["item"]
    assert top == brute_force(snapshot(2), snapshot(2).user_vectors[0], 1)[0]
    client.set(writer.layout.current, 99)  # points at nothing: an error, not NoVersion
    with pytest.raises(StoreError, match=r"version 99 .* keys are missing"):
        reader.user_vector(0)
    stale.close()


def test_while_a_table_loads_other_calls_answer_from_the_previous_version(client, namespace):
    def expect(v: int) -> list[str]:
        return brute_force(snapshot(v), snapshot(v).user_vectors[0], 5)

    def items(recs) -> list[str]:
        return [r["item"] for r in recs]

    writer = Writer(client, namespace, keep=2, grace_s=60)
    writer.publish(snapshot(1))
    reader = Reader(client, namespace)
    assert items(reader.recommend(0, k=5)) == expect(1)
    writer.publish(snapshot(2))
    reader.cache._loading.acquire()  # as if another thread were loading version 2
    try:
        assert items(reader.recommend(0, k=5)) == expect(1)  # all of it from version 1
    finally:
        reader.cache._loading.release()
    assert items(reader.recommend(0, k=5)) == expect(2)
    Writer(client, namespace, keep=1, grace_s=0).publish(snapshot(3))  # 1 and 2 are gone
    reader.cache._loading.acquire()
    threading.Timer(0.2, reader.cache._loading.release).start()
    assert items(reader.recommend(0, k=5)) == expect(3)  # version 2 vanished: waited for 3


def test_a_torn_vector_is_an_error(writer, reader, client):
    writer.publish(snapshot(1))
    client.set(writer.layout.matrix(1, 1), b"\x00" * 80)  # item-9 is row 2 of chunk 1 (R = 7)
    with pytest.raises(StoreError, match="8 bytes, expected 36"):
        reader.item_vectors(["item-9"])
    client.hset(writer.layout.item(1), "item-9", b"\x00" * 7)
    with pytest.raises(StoreError, match="not a row number"):
        reader.item_vectors(["item-9"])


def test_drop_removes_only_the_namespace(writer, reader, client, namespace):
    writer.publish(snapshot(1))
    client.set(f"{namespace}:v:1:not-ours", b"x")
    assert writer.drop() == 2 + 3 + 2 * 29  # current, versions; meta, item, user; chunks
    assert reader.version() is None
    assert client.exists(f"{namespace}:v:1:not-ours")


def distinct(version: int, n_items: int = 300, n_users: int = 4) -> Snapshot:
    """Vectors that name their version: item = [v + .5, f_v(row), row, 0], user = [1, ±1, 0, u].

    score = v + .5 ± f_v(row) with 0 <= f_v < .4, so int(score) == v; the user's sign flips with
    the version, so a user vector of one version on the table of another gives another top-k.
    """
    rows = np.arange(n_items)
    items = np.zeros((n_items, 4), np.float32)
    items[:, 0] = version + 0.5
    items[:, 1] = (rows * (version + 1)) % 997 / 997 * 0.4  # another order in every version
    items[:, 2] = rows
    users = np.zeros((n_users, 4), np.float32)
    users[:, 0] = 1
    users[:, 1] = 1 if version % 2 else -1
    users[:, 3] = np.arange(n_users)
    return Snapshot(
        version, 0, [f"i{r}" for r in rows], items, [f"u{u}" for u in range(n_users)], users
    )


def test_a_polling_reader_never_sees_a_mix_of_versions(redis_url, client, namespace):
    last = 20
    expected = {v: distinct(v) for v in range(1, last + 1)}
    top = {v: brute_force(s, s.user_vectors[0], 5) for v, s in expected.items()}
    done, problems, seen = threading.Event(), [], []

    def poll() -> None:
        reader = Reader.from_url(redis_url, namespace)
        while not done.is_set():
            try:
                vecs = reader.item_vectors(["i0", "i17", "i299"])
                if vecs:
                    v = int(vecs["i0"][0])  # v + .5
                    seen.append(v)
                    for item, vec in vecs.items():
                        row = expected[v].item_ids.index(item)
                        if vec.tobytes() != expected[v].item_vectors[row].tobytes():
                            problems.append(f"{item} of version {v}: {vec}")
                    recs = reader.recommend("u0", k=5)
                    versions = {int(r["score"]) for r in recs}
                    w = versions.pop()
                    if versions or [r["item"] for r in recs] != top[w]:
                        problems.append(f"mixed top-5: {recs}")
            except NoVersion:
                pass
            except Exception as e:  # any other error fails the test
                problems.append(repr(e))
        reader.close()

    thread = threading.Thread(target=poll)
    thread.start()
    writer = Writer(client, namespace, chunk_rows=32, keep=2, grace_s=0)
    try:
        for v in range(1, last + 1):
            writer.publish(expected[v])
            if v % 4:
                continue  # back to back: versions vanish under the reader (keep=2, no grace)
            # every 4th, until the reader has read it (or failed, for the asserts below to
            # name it): it reads 5 versions at least, however the threads are scheduled
            wait_until(
                lambda v=v: (seen and seen[-1] >= v) or problems,
                10,
                f"the reader to read version {v}",
                interval=0.005,
            )
            if problems:
                break
    finally:
        done.set()
        thread.join()
    assert not problems, problems[:5]
    assert len(set(seen)) >= 3, f"the reader saw too few versions to test anything: {set(seen)}"
    assert seen == sorted(seen)  # the pointer never went backwards
    assert writer.versions() == [last - 1, last]
