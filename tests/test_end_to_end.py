"""generate → replay into Kafka → train until idle → publish → recommend, all real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from store import Reader
from stream.synthetic import World

pytestmark = pytest.mark.slow

BAD = [
    b"not json at all",
    b'{"user": 1, "item": "i2", "ts": 5, "weight": -3}',
    b'{"item": "i2", "ts": 5}',
    b'{"user": "' + b"u" * 300 + b'", "item": "i1", "ts": 5}',
    b"\xff\xfe not utf-8",
]


def recstream(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"recstream {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def world() -> World:
    return World(users=300, items=400, clusters=4, affinity=0.9, seed=11)


@pytest.fixture(scope="module")
def events_log(tmp_path_factory, world) -> Path:
    from stream.synthetic import generate, write_jsonl

    path = tmp_path_factory.mktemp("log") / "events.jsonl"
    write_jsonl(path, generate(world, 30_000))
    with open(path, "ab") as f:
        f.write(b"\n".join(BAD) + b"\n")
    return path


def test_kafka_to_redis(tmp_path, kafka_bootstrap, redis_url, namespace, topic, world, events_log):
    uri = f"kafka://{kafka_bootstrap}/{topic}"
    recstream("replay", str(events_log), "--to", uri, "--no-progress")
    ckpt = tmp_path / "ckpt"
    out = recstream(
        "train",
        "--source",
        uri,
        "--group",
        f"g-{topic}",
        "--checkpoint-dir",
        str(ckpt),
        "--redis",
        redis_url,
        "--namespace",
        namespace,
        "--stop-when-idle",
        "3",
        "--dim",
        "32",
        "--no-progress",
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    status = json.loads(
        recstream("status", "--checkpoint-dir", str(ckpt), "--namespace", namespace).stdout
    )
    assert status["events_applied"] == 30_000
    assert status["events_rejected"] == len(BAD)
    assert sum(status["offsets"].values()) == 30_000 + len(BAD)
    assert status["published_version"] == status["checkpoint"]
    assert summary["events_applied"] == 30_000

    reader = Reader.from_url(redis_url, namespace=namespace)
    assert reader.version() == status["published_version"]
    counts = Counter(e["item"] for e in _events(events_log))
    popular = [item for item, _ in counts.most_common(10)]
    own_model, own_pop = [], []
    for user in range(0, 300, 7):
        recs = reader.recommend(user, k=10)
        assert len(recs) == 10
        assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
        c = world.user_cluster(user)
        own_model.append(sum(world.item_cluster(r["item"]) == c for r in recs) / 10)
        own_pop.append(sum(world.item_cluster(i) == c for i in popular) / 10)
    model, pop = sum(own_model) / len(own_model), sum(own_pop) / len(own_pop)
    assert model > 0.7, f"only {model:.0%} of recommendations come from the user's own cluster"
    assert model > pop + 0.3, f"model {model:.0%} vs popularity {pop:.0%}"

    # the CLI's recommend is what a service sees: JSON, int ids found as strings
    recs = json.loads(
        recstream(
            "recommend", "--redis", redis_url, "--namespace", namespace, "--user", "7", "-k", "5"
        ).stdout
    )
    assert len(recs) == 5 and all(set(r) == {"item", "score"} for r in recs)


def test_file_source_resumes_without_double_counting(tmp_path, events_log):
    ckpt = tmp_path / "ckpt"
    lines = events_log.read_bytes().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(lines[:10_000]))
    args = [
        "train",
        "--checkpoint-dir",
        str(ckpt),
        "--stop-when-idle",
        "0.5",
        "--dim",
        "16",
        "--no-progress",
    ]
    recstream(*args, "--source", f"file://{part}")
    first = json.loads(recstream("status", "--checkpoint-dir", str(ckpt)).stdout)
    assert first["events_applied"] == 10_000 and first["events_rejected"] == 0
    # the log grows; the trainer resumes where its checkpoint stands
    part.write_bytes(b"".join(lines))
    recstream(*args, "--source", f"file://{part}")
    second = json.loads(recstream("status", "--checkpoint-dir", str(ckpt)).stdout)
    assert second["events_applied"] == 30_000
    assert second["events_rejected"] == len(BAD)
    dead = [json.loads(x) for x in (ckpt / "dead-letter.jsonl").read_text().splitlines()]
    assert len(dead) == len(BAD) and all(d["reason"] for d in dead)


def _events(path: Path):
    for line in path.read_bytes().splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue
