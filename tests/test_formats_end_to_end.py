"""The README's MovieLens-style example with real processes: a CSV export with a header → replay
into Kafka → train → publish → recommend; and the same CSV trained from directly (file://)."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MAP = "user=userId,item=movieId,ts=timestamp:s,weight=rating"
USERS, ITEMS, ROUNDS = 40, 60, 100  # 4,000 ratings, about half of them 4 or more


def group(n: int) -> int:
    return n % 2


def write_ratings(path: Path, seed: int = 1) -> tuple[int, int]:
    """Users of group g rate the movies of group g 4-5 and the others' 1-2 (what --min-weight 4
    must remove); one bad row at data row 10. Returns (rows, rows rated 4 or more)."""
    rng = random.Random(seed)
    rows, high, t = [], 0, 1_260_000_000
    for _ in range(ROUNDS):
        for user in range(USERS):
            movie = rng.randrange(ITEMS)
            mine = group(movie) == group(user)
            rating = rng.choice([4.0, 4.5, 5.0]) if mine else rng.choice([1.0, 2.0, 2.5])
            t += rng.randrange(1, 90)
            rows.append([user, movie, rating, t])
            high += rating >= 4
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows(rows[:9])
        w.writerow([7, 3, 4.0, "last tuesday"])
        w.writerows(rows[9:])
    return len(rows), high


def recstream(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"recstream {args[0]}:\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout.strip()
    try:
        return json.loads(out)  # status, recommend: one JSON document
    except ValueError:
        return json.loads(out.splitlines()[-1])  # train: the summary is the last line


def test_csv_export_to_kafka_to_recommendations(
    tmp_path: Path, kafka_bootstrap: str, topic: str, redis_url: str, namespace: str
) -> None:
    ratings = tmp_path / "ratings.csv"
    _, high = write_ratings(ratings)
    uri = f"kafka://{kafka_bootstrap}/{topic}"
    dead = tmp_path / "replay-dead.jsonl"
    replayed = recstream(
        "replay", str(ratings), "--to", uri, "--map", MAP, "--min-weight", "4",
        "--dead-letter", str(dead),
    )  # fmt: skip
    assert replayed["produced"] == high and replayed["rejected"] == 1
    assert json.loads(dead.read_text())["row"] == 10
    ckpt = tmp_path / "ckpt"
    trained = recstream(
        "train", "--source", uri, "--group", f"g-{topic}", "--checkpoint-dir", str(ckpt),
        "--redis", redis_url, "--namespace", namespace, "--stop-when-idle", "3", "--dim", "16",
        "--no-progress",
    )  # fmt: skip
    assert trained["events_applied"] == high and trained["events_rejected"] == 0
    own = []
    for user in range(0, USERS, 3):
        recs = recstream(
            "recommend", "--redis", redis_url, "--namespace", namespace, "--user", str(user),
            "-k", "5",
        )  # fmt: skip
        assert len(recs) == 5
        own.append(sum(group(int(r["item"])) == group(user) for r in recs) / 5)
    share = sum(own) / len(own)
    # only the ratings of 4 or more were kept: users rated their own group's movies that high
    print(f"own-group share of the top 5: {share:.0%}")
    assert share > 0.8, f"only {share:.0%} of recommendations from the user's own group"


def test_train_straight_from_the_csv(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv"
    rows, high = write_ratings(ratings)
    ckpt = tmp_path / "ckpt"
    args = ["--checkpoint-dir", str(ckpt), "--stop-when-idle", "0.5", "--dim", "8"]
    trained = recstream(
        "train", "--source", f"file://{ratings}", "--map", MAP, "--min-weight", "4",
        "--no-progress", *args,
    )  # fmt: skip
    assert trained["events_applied"] == high and trained["events_rejected"] == 1
    status = recstream("status", "--checkpoint-dir", str(ckpt))
    assert status["offsets"] == {f"file:{ratings}": rows + 1}  # every data row, the bad one too
    (letter,) = [json.loads(x) for x in (ckpt / "dead-letter.jsonl").read_text().splitlines()]
    assert letter["row"] == 10 and "last tuesday" in letter["reason"]
