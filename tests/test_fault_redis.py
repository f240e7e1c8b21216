"""Fault scenarios 4 and 5: Redis killed during a publish; readers polling during publishes.

The writer is the real `recstream publish --watch` process; the test writes the checkpoints it
publishes (serving vectors chosen so that any mix of two versions is visible).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest
import redis

from store import NoVersion, Reader, RedisServer, Snapshot, StoreError
from store.layout import Layout
from store.reader import load_table
from tests.faultkit import Proc, figure, snapshot, wait_until, write_checkpoint

pytestmark = pytest.mark.slow

PAUSE_S = 5  # the writer's pause mid-publish, long enough that Redis is back before it goes on


def publish_args(directory: Path, url: str, namespace: str, *more: str) -> list[str]:
    return [
        "publish",
        "--watch",
        "--checkpoint-dir",
        str(directory),
        "--namespace",
        namespace,
        "--interval",
        "0.1",
        *more,
    ], {"RECSTREAM_REDIS": url}  # type: ignore[return-value]


class Monitor(threading.Thread):
    """Reads the pointer and the whole version it names, over and over; counts every time the
    pointer named a version that was not complete and identical to its snapshot."""

    def __init__(self, url: str, namespace: str, expected: dict[int, Snapshot]) -> None:
        super().__init__(daemon=True)
        self.url, self.layout, self.expected = url, Layout(namespace), expected
        self.stop = threading.Event()
        self.bad: list[str] = []
        self.reads = 0
        self.last: int | None = None  # the version of the last complete read

    def run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        while not self.stop.is_set():
            try:
                raw = client.get(self.layout.current)
                if raw is None:
                    self.stop.wait(0.01)  # no version yet: nothing to read, nothing wrong
                    continue
                v = int(raw)
                table = load_table(client, self.layout, v)
                want = self.expected[v]
                if (
                    table.ids != want.item_ids
                    or table.matrix.tobytes() != want.item_vectors.tobytes()
                ):
                    self.bad.append(f"version {v} differs from its snapshot")
                self.last = v
                self.reads += 1
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.02)  # Redis is down: nothing to read, nothing wrong
            except StoreError as e:  # the pointer names a version whose keys are not all there
                self.bad.append(f"{type(e).__name__}: {e}")
        client.close()


@pytest.mark.parametrize("restart", ["with-aof", "empty"])
def test_redis_killed_during_a_publish_never_exposes_a_half_written_version(tmp_path, restart):
    ckpt_dir, ns = tmp_path / "ckpt", "faults"
    expected = {v: snapshot(v, items=40_000) for v in (1, 2)}
    with RedisServer(appendonly=restart == "with-aof") as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        args, env = publish_args(ckpt_dir, server.url, ns, "--test-mode")
        # paused long enough that Redis is back before the writer goes on, even on a slow host
        env["RECSTREAM_FAULT"] = f"publish-written@2:pause={PAUSE_S}"
        writer = Proc(args, tmp_path / "writer.log", env=env)
        monitor = Monitor(server.url, ns, expected)
        try:
            write_checkpoint(ckpt_dir, expected[1])
            wait_until(lambda: client.get(f"{ns}:current") == b"1", 30, "version 1")
            monitor.start()
            write_checkpoint(ckpt_dir, expected[2])
            wait_until(lambda: "FAULT publish-written@2" in writer.log(), 30, "the pause")
            resumes = time.monotonic() + PAUSE_S  # when the writer goes on (a bit later)
            assert client.exists(f"{ns}:v:2:matrix:0") and not client.exists(f"{ns}:v:2:meta")
            reads_at_kill = monitor.reads
            server.kill()  # mid-publish: version 2's data written, its meta not yet
            time.sleep(0.5)
            server.start()
            restarted = time.monotonic()
            if restart == "with-aof":  # the half-written version came back, still not current
                assert client.get(f"{ns}:current") == b"1"

            def consistent() -> bool:
                try:
                    if client.get(f"{ns}:current") != b"2":
                        return False
                    table = load_table(client, Layout(ns), 2)
                except (redis.RedisError, StoreError):
                    return False
                return table.matrix.tobytes() == expected[2].item_vectors.tobytes()

            wait_until(consistent, 60, "version 2 to be current and complete")
            took = time.monotonic() - restarted
            after_pause = max(0.0, time.monotonic() - max(restarted, resumes))
            # the monitor reads the final state too (version 2 is current only after the kill)
            wait_until(
                lambda: monitor.reads > reads_at_kill and monitor.last == 2,
                30,
                "the monitor to read version 2 after the restart",
            )
            assert writer.alive()
        finally:
            monitor.stop.set()
            monitor.join(10)
            writer.kill()
            client.close()
    figure(f"Redis restart ({restart}) to consistency, the injected pause included", took)
    figure(f"writer resumed ({restart}) to consistency", after_pause)
    assert monitor.bad == [], monitor.bad[:5]
    assert monitor.reads > 0
    assert monitor.reads > reads_at_kill and monitor.last == 2


def test_readers_polling_during_repeated_publishes_never_see_a_mix(tmp_path, redis_url, namespace):
    ckpt_dir, versions = tmp_path / "ckpt", 25
    written: dict[int, float] = {}  # version -> when its checkpoint was complete
    args, env = publish_args(ckpt_dir, redis_url, namespace, "--grace", "1", "--keep", "1")
    writer = Proc(args, tmp_path / "writer.log", env=env)
    done = threading.Event()
    mixed: list[str] = []
    errors: list[str] = []
    first_seen: dict[int, float] = {}
    latest = [0, 0, 0]  # per reader, the version it last read
    calls = [0]

    def poll(n: int) -> None:
        reader = Reader.from_url(redis_url, namespace)
        last = 0
        while not done.is_set():
            try:
                recs = reader.recommend(f"u{n}", k=5)
                vecs = reader.item_vectors(["i0", "i7777", "i19999"])
                user = reader.user_vector(f"u{n}")
            except NoVersion:
                done.wait(0.01)  # nothing published yet
                continue
            except Exception as e:  # a torn vector, a vanished version: all failures
                errors.append(repr(e))
                continue
            calls[0] += 1
            if any(r["score"] != 0.0 for r in recs):
                mixed.append(f"recommend mixed versions: {recs}")
            seen = {float(v[0]) for v in vecs.values()}
            if len(seen) != 1 or len(vecs) != 3:
                mixed.append(f"item_vectors mixed versions: {vecs}")
                continue
            v = int(seen.pop())
            if v < last:
                mixed.append(f"went back from version {last} to {v}")
            last = latest[n] = v
            first_seen.setdefault(v, time.time())
            if user is None or float(user[1]) > 0:
                mixed.append(f"user u{n} has no vector, or a wrong one: {user}")
        reader.close()

    threads = [threading.Thread(target=poll, args=(n,), daemon=True) for n in range(len(latest))]
    for t in threads:
        t.start()
    try:
        for v in range(1, versions + 1):
            write_checkpoint(ckpt_dir, snapshot(v, items=20_000))
            written[v] = time.time()
            # the next publish comes once every reader has read this one: every version is
            # published while readers poll, and seen, however slow the host (a failure ends
            # the wait early, for the asserts below to name it)
            wait_until(
                lambda v=v: min(latest) >= v or mixed or errors,
                30,
                f"every reader to read version {v}",
            )
            if mixed or errors:
                break
    finally:
        done.set()
        for t in threads:
            t.join(10)
        writer.kill()
    stale = [first_seen[v] - written[v] for v in sorted(first_seen)]
    figure("reads while publishing", calls[0], "calls")
    figure("stale-read window, checkpoint written to first read (median)", statistics.median(stale))
    figure("stale-read window, checkpoint written to first read (max)", max(stale))
    assert mixed == [], mixed[:5]
    assert errors == [], errors[:5]
    assert len(first_seen) >= 5, f"too few versions seen to test anything: {sorted(first_seen)}"


def test_readers_polling_through_delta_publishes_of_the_writer_process(
    tmp_path, redis_url, namespace
):
    """The real writer publishes 21 checkpoints of a world where 2% of the items change each
    time: deltas, a full version every 5; readers moving in place never see a mix."""
    from tests.test_store_delta import World, exact

    ckpt_dir, world, snaps = tmp_path / "ckpt", World(items=3000, share=0.02), {}
    more = ("--grace", "1", "--keep", "1", "--compact-every", "5", "--index", "none")
    args, env = publish_args(ckpt_dir, redis_url, namespace, *more)
    writer = Proc(args, tmp_path / "writer.log", env=env)
    done, problems, seen = threading.Event(), [], [0, 0]
    readers: list[Reader] = []

    def poll(n: int) -> None:
        reader = Reader.from_url(redis_url, namespace)
        readers.append(reader)
        while not done.is_set():
            try:
                recs = reader.recommend("u1", k=8)
            except NoVersion:
                done.wait(0.01)
                continue
            except Exception as e:  # a vanished or torn version: all failures
                problems.append(repr(e))
                continue
            v = int(recs[0]["score"]) - 100  # item m names the version that answered
            want = exact(snaps[v], 1, 8)
            if [r["item"] for r in recs] != [i for i, _ in want]:
                problems.append(f"version {v}: {recs} != {want}")
            if v < seen[n]:
                problems.append(f"went back from version {seen[n]} to {v}")
            seen[n] = v

    threads = [threading.Thread(target=poll, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    try:
        for v in range(1, 22):
            snaps[v] = world.step()
            write_checkpoint(ckpt_dir, snaps[v])
            wait_until(lambda v=v: min(seen) >= v or problems, 30, f"the readers at {v}")
            if problems:
                break
    finally:
        done.set()
        for t in threads:
            t.join(10)
        writer.kill()
    log = writer.log()
    assert problems == [], problems[:5]
    assert log.count("wrote delta version") >= 15, log[-3000:]
    assert log.count("wrote full version") >= 3
    switches = [kind for r in readers for _, kind, _ in r.cache.switches]
    assert switches.count("delta") >= 20 and "load" in switches, switches
