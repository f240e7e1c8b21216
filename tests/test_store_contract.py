"""The key layout as a contract: a client with nothing but `redis-cli` (no Python Redis client,
no project code) follows `{ns}:current` → meta → a user's and an item's float32 vectors through
a delta's chain and reproduces the score `recstream recommend` prints; and reads a precomputed
top-N list with one HGET. The versions are set up with the project's writer; every read below
is a redis-cli process."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from store import Snapshot, Writer
from store.draft import Settings

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")

DIM = 5


def cli(url: str, *args: str, raw: bool = True) -> bytes:
    """One redis-cli command; --raw prints a reply's bytes and a newline (binary-safe)."""
    mode = "--raw" if raw else "--no-raw"
    done = subprocess.run(["redis-cli", "-u", url, mode, *args], capture_output=True, check=True)
    return done.stdout[:-1]


def meta_of(url: str, ns: str, v: str) -> dict[str, str]:
    lines = cli(url, "HGETALL", f"{ns}:v:{v}:meta").decode().split("\n")
    return dict(zip(lines[0::2], lines[1::2], strict=True))


def item_vector(url: str, ns: str, meta: dict[str, str], item: str) -> np.ndarray | None:
    """The first version of the chain that names the item holds its row ("" = removed)."""
    dim, R = int(meta["dim"]), int(meta["chunk_rows"])
    for c in meta["chain"].split(","):
        answer = cli(url, "HGET", f"{ns}:v:{c}:item", item, raw=False).decode()
        if answer == "(nil)":
            continue
        row = json.loads(answer)  # a quoted decimal, or "" for a removed item
        if row == "":
            return None
        r = int(row)
        start = (r % R) * 4 * dim
        blob = cli(
            url, "GETRANGE", f"{ns}:v:{c}:matrix:{r // R}", str(start), str(start + 4 * dim - 1)
        )
        return np.array(struct.unpack(f"<{dim}f", blob), np.float32)
    return None


def recommend(url: str, ns: str, *args: str) -> list[dict]:
    cmd = [sys.executable, "-m", "trainer", "recommend", "--redis", url, "--namespace", ns]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_redis_cli_alone_reproduces_recommend_through_a_delta(redis_url, namespace):
    rng = np.random.default_rng(3)
    items = rng.standard_normal((40, DIM), dtype=np.float32)
    users = rng.standard_normal((3, DIM), dtype=np.float32)
    ids = [f"i{j}" for j in range(40)]
    snap = lambda v, it, us, stamps: Snapshot(  # noqa: E731
        v, 0, ids[: len(it)], it, ["u0", "u1", "odd user"], us, user_stamps=np.full(3, v),
        stamp=v, item_stamps=stamps,
    )  # fmt: skip
    writer = Writer.from_url(
        redis_url, namespace, chunk_rows=8, settings=Settings(index="none", top_n=5, delta_share=1)
    )
    writer.publish(snap(1, items, users, np.ones(40, int)))
    changed = items.copy()
    changed[5] += 1.0
    stamps = np.ones(39, int)
    stamps[5] = 2
    writer.publish(snap(2, changed[:39], users * 2, stamps))  # i39 removed, i5 changed
    assert writer.last["kind"] == "delta"

    v = cli(redis_url, "GET", f"{namespace}:current").decode()
    meta = meta_of(redis_url, namespace, v)
    assert (v, meta["format"], meta["chain"]) == ("2", "2", "2,1")
    dim = int(meta["dim"])
    for user in ("u1", "odd user"):
        blob = cli(redis_url, "HGET", f"{namespace}:v:{v}:user", user)
        u = np.array(struct.unpack(f"<{dim}f", blob), np.float32)
        served = {
            r["item"]: r["score"]
            for r in recommend(redis_url, namespace, "--user", user, "-k", "100")
        }
        assert len(served) == 39 and "i39" not in served
        for item in ("i5", "i7", "i38"):  # changed in the delta; unchanged (found in version 1)
            vec = item_vector(redis_url, namespace, meta, item)
            assert vec is not None
            assert float(u @ vec) == pytest.approx(served[item], rel=1e-5, abs=1e-6)
    assert item_vector(redis_url, namespace, meta, "i39") is None  # removed by the delta
    assert item_vector(redis_url, namespace, meta, "never") is None

    # a precomputed top-N list: one HGET, JSON [{"item", "score"}, ...]
    assert meta["top_n"] == "5"
    listed = json.loads(cli(redis_url, "HGET", f"{namespace}:v:{v}:topn", "u1"))
    served = recommend(redis_url, namespace, "--user", "u1", "-k", "5")
    assert [r["item"] for r in listed] == [r["item"] for r in served]
    assert [r["score"] for r in listed] == pytest.approx([r["score"] for r in served], rel=1e-5)
    assert recommend(redis_url, namespace, "--user", "u1", "--precomputed") == listed
