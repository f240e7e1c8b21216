"""Serving at scale, one catalogue size per call: publish (full, 1% delta, compaction), the
reader's version switch, exact vs approximate top-100 (p50/p99, recall@100), precomputed top-N,
and Redis memory across publishes. The pipeline section runs it at 100k and 1M items; the
10M-item run is its own command (the README has its figures):

    python -m bench.versions --items 10000000

Items are taste clusters (n/1000 centres, dim 64 + a bias column), users near the centres:
trained two-tower embeddings have such structure; i.i.d. Gaussian vectors have none, and no
index finds their neighbours cheaply (the note gives recall there too, at the same nprobe).
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import numpy as np

DIM = 64
K = 100

Row = tuple[str, float, str]  # (what, value, unit)


def world(n: int, users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(items (n, DIM+1), users (users, DIM+1)) float32, built in place (10M x 65 = 2.6 GB)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(100, n // 1000), DIM), dtype=np.float32)
    items = np.empty((n, DIM + 1), np.float32)
    for lo in range(0, n, 1 << 20):
        hi = min(n, lo + (1 << 20))
        items[lo:hi, :DIM] = centres[rng.integers(0, len(centres), hi - lo)]
        items[lo:hi, :DIM] += 0.8 * rng.standard_normal((hi - lo, DIM), dtype=np.float32)
        items[lo:hi, DIM] = rng.standard_normal(hi - lo, dtype=np.float32)
    people = np.ones((users, DIM + 1), np.float32)
    people[:, :DIM] = 0.4 * centres[rng.integers(0, len(centres), users)]
    people[:, :DIM] += 0.2 * rng.standard_normal((users, DIM), dtype=np.float32)
    return items, people


class Memory(threading.Thread):
    """Samples Redis's used_memory every 20 ms; `peak()` since the last `reset()`."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.client, self.stop, self._peak = client, threading.Event(), 0

    def used(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def reset(self) -> int:
        self._peak = now = self.used()
        return now

    def peak(self) -> int:
        return max(self._peak, self.used())

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self._peak = max(self._peak, self.used())


def _latency(fn: Callable[[int], object], queries: int) -> np.ndarray:
    fn(0)
    ms = np.empty(queries)
    for q in range(queries):
        t = time.perf_counter()
        fn(q)
        ms[q] = (time.perf_counter() - t) * 1e3
    return ms


def measure(
    n: int, url: str | None = None, users: int = 10_000, queries: int = 200, top_n_users: int = 0,
    seed: int = 0, say: Callable[[str], None] = print,
) -> list[Row]:  # fmt: skip
    """The figures for an n-item catalogue (see the module's docstring)."""
    import redis

    from store import Reader, RedisServer, Snapshot, Writer, topn
    from store.draft import Settings

    rows: list[Row] = []
    with ExitStack() as stack:
        if url is None:
            url = stack.enter_context(RedisServer()).url
        admin = redis.Redis.from_url(url)
        stack.callback(admin.close)
        memory = Memory(admin)
        memory.start()
        stack.callback(memory.join)  # after the stop just below (callbacks run last first)
        stack.callback(memory.stop.set)
        ns = f"bench-versions-{n}"
        say(f"{n:,} items: building the catalogue")
        items, people = world(n, users, seed)
        ids = [f"i{j}" for j in range(n)]
        user_ids = [f"u{u}" for u in range(users)]

        def snap(v: int, stamps: np.ndarray, item_ids: list[str], vectors: np.ndarray) -> Snapshot:
            s = Snapshot(v, 0, item_ids, vectors, user_ids, people,
                         user_stamps=np.full(users, v), stamp=v, item_stamps=stamps)  # fmt: skip
            t = time.perf_counter()
            _ = s.digest  # paid when the writer loads the file (load_snapshot checks it)
            rows.append((f"snapshot digest v{v} (SHA-256, at load)", time.perf_counter() - t, "s"))
            return s

        settings = Settings(index="ivf", compact_every=10, delta_share=0.25)
        writer = Writer.from_url(url, ns, grace_s=600, keep=1, settings=settings)
        stack.callback(writer.drop)
        base = memory.reset()
        first = snap(1, np.ones(n, np.int64), ids, items)
        say(f"{n:,} items: full publish (index training included)")
        t = time.perf_counter()
        writer.publish(first)
        rows.append(("publish full version (s)", time.perf_counter() - t, "s"))
        last = writer.last
        rows += [
            ("  of which: draft (index: train, assign, calibrate)", last["draft_s"], "s"),
            ("  of which: write", last["write_s"], "s"),
            ("  of which: read back and verify", last["verify_s"], "s"),
            ("index nprobe (writer's choice for recall 0.95)", last["nprobe"], ""),
        ]
        payload = memory.used() - base
        rows.append(("Redis: one full version's payload", payload / 1e6, "MB"))
        rows.append(
            ("Redis peak during the full publish / payload", (memory.peak() - base) / payload, "×")
        )

        reader = Reader.from_url(url, ns)
        stack.callback(reader.close)
        say(f"{n:,} items: reader load, exact and approximate top-{K}")
        reader.recommend("u0", K)
        rows.append(
            ("reader: first load (full version + index lists)", reader.cache.switches[-1][2], "s")
        )
        pick = np.random.default_rng(seed + 1).choice(users, queries, replace=False)
        exact = _latency(lambda q: reader.recommend(user_ids[pick[q]], K), queries)
        approx = _latency(lambda q: reader.recommend(user_ids[pick[q]], K, exact=False), queries)
        rows += [
            (f"exact top-{K} p50 (Reader.recommend)", float(np.median(exact)), "ms"),
            (f"exact top-{K} p99", float(np.percentile(exact, 99)), "ms"),
            (f"approximate top-{K} p50 (exact=False)", float(np.median(approx)), "ms"),
            (f"approximate top-{K} p99", float(np.percentile(approx, 99)), "ms"),
        ]
        hits = 0
        for u in pick[:100]:
            want = {r["item"] for r in reader.recommend(user_ids[u], K)}
            hits += len(want & {r["item"] for r in reader.recommend(user_ids[u], K, exact=False)})
        rows.append((f"approximate recall@{K} vs exact (100 users)", hits / (100 * K), ""))

        say(f"{n:,} items: 1% delta")
        rng = np.random.default_rng(seed + 2)
        changed = rng.choice(n, n // 100, replace=False)
        items[changed, :DIM] += 0.3 * rng.standard_normal((len(changed), DIM), dtype=np.float32)
        stamps = np.ones(n, np.int64)
        stamps[changed] = 2
        second = snap(2, stamps, ids, items)
        memory.reset()
        t = time.perf_counter()
        writer.publish(second)
        rows.append(("publish 1% delta (s)", time.perf_counter() - t, "s"))
        assert writer.last["kind"] == "delta", writer.last
        rows.append(
            ("Redis peak during the delta publish / payload", (memory.peak() - base) / payload, "×")
        )
        reader.recommend("u0", K)
        kind, took = reader.cache.switches[-1][1:]
        rows.append((f"reader switch to the delta ({kind}, in place)", took, "s"))
        approx2 = _latency(lambda q: reader.recommend(user_ids[pick[q]], K, exact=False), queries)
        rows.append((f"approximate top-{K} p50 after the delta", float(np.median(approx2)), "ms"))

        say(f"{n:,} items: compaction (a full version while the chain is in its grace period)")
        memory.reset()
        t = time.perf_counter()
        writer.settings = dataclasses.replace(settings, compact_every=1)  # as at the K-th delta
        third = snap(3, stamps, ids, items)
        writer.publish(third)
        assert writer.last["kind"] == "full", writer.last
        rows.append(("publish full version, index reused (s)", time.perf_counter() - t, "s"))
        rows.append(
            ("Redis peak across the compaction / payload", (memory.peak() - base) / payload, "×")
        )
        if n > 2_000_000:  # a reload holds two copies meanwhile; beside Redis's two full versions
            reader.cache.copy = None  # and the catalogue, 10M items would not fit in 24 GB
        reader.recommend("u0", K)
        rows.append(
            ("reader switch across a compaction (reload)", reader.cache.switches[-1][2], "s")
        )

        if top_n_users:
            copy = reader.cache.copy
            assert copy is not None
            say(f"{n:,} items: precomputed top-{K} for {top_n_users:,} users")
            for exact_lists in (False, True)[: 1 if n > 2_000_000 else 2]:  # exact: ~n/1M x 1M's
                t = time.perf_counter()
                blobs = list(topn.lists(copy, people[:top_n_users], K, exact_lists))
                label = "exact scan" if exact_lists else "index"
                per_10k = (time.perf_counter() - t) * 10_000 / top_n_users
                rows.append((f"top-{K} lists per 10k users ({label}), compute", per_10k, "s"))
            t = time.perf_counter()
            pipe = admin.pipeline(transaction=False)
            for lo in range(0, len(blobs), 1000):
                batch = zip(user_ids[lo : lo + 1000], blobs[lo : lo + 1000], strict=False)
                pipe.hset(f"{ns}:scratch", mapping=dict(batch))
            pipe.unlink(f"{ns}:scratch")
            pipe.execute()
            per_10k = (time.perf_counter() - t) * 10_000 / len(blobs)
            rows.append((f"top-{K} lists per 10k users, HSET", per_10k, "s"))
            rows.append((f"top-{K} list size (JSON)", sum(map(len, blobs)) / len(blobs), "B"))
    return rows


def table(n: int, rows: list[Row]) -> str:
    lines = [f"| {n:,} items | value |", "|---|---|"]
    for what, value, unit in rows:
        shown = f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
        lines.append(f"| {what} | {shown} {unit} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.versions", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--top-n-users", type=int, default=0, help="time top-100 lists for these")
    p.add_argument("--redis", default=None, help="a Redis URL (default: a redis-server of our own)")
    a = p.parse_args()
    t = time.perf_counter()
    rows = measure(a.items, a.redis, a.users, a.queries, a.top_n_users)
    print(table(a.items, rows))
    print(f"\n({time.perf_counter() - t:.0f} s in all)")


if __name__ == "__main__":
    main()
