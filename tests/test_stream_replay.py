"""Replay: mapped records and their dead letters, pacing (--rate, --speed), and the command into a
real broker, read back by an independent consumer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from stream.errors import SourceError
from stream.event import Decoder, Interaction
from stream.files import FileSource
from stream.formats import FieldMap, LogFormat
from stream.pacing import Pace
from stream.replay import replay_into
from stream.synthetic import World, generate, write_jsonl

RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,31,2.5,1260759144\n"
    "1,1029,3.0,1260759179\n"
    "2,10,4.0,1260759182\n"
    "2,17,oops,1260759185\n"
    "3,10,5.0,1260759200\n"
)
MAP = "user=userId,item=movieId,ts=timestamp:s,weight=rating"


class Recorder:
    """A sink that keeps what it is sent and when."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None, int | None]] = []
        self.at: list[float] = []

    def send(self, value: bytes, key: bytes | None = None, timestamp_ms: int | None = None) -> None:
        self.at.append(time.monotonic())
        self.records.append((value, key, timestamp_ms))


def test_mapped_rows_are_produced_as_events_keyed_by_user(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(RATINGS)
    sink = Recorder()
    fmt = LogFormat(fields=FieldMap.parse(MAP), min_weight=3)
    done = replay_into(path, sink, log_format=fmt, dead_letter=tmp_path / "dead.jsonl")
    decode = Decoder().decode
    assert [decode(v) for v, _, _ in sink.records] == [
        Interaction("1", "1029", 1_260_759_179_000, 3.0),
        Interaction("2", "10", 1_260_759_182_000, 4.0),
        Interaction("3", "10", 1_260_759_200_000, 5.0),
    ]
    assert [k for _, k, _ in sink.records] == [b"1", b"2", b"3"]
    assert [t for _, _, t in sink.records] == [
        1_260_759_179_000,
        1_260_759_182_000,
        1_260_759_200_000,
    ]
    assert (done.produced, done.rejected, done.dropped) == (3, 1, 1)
    assert (done.first_ts, done.last_ts) == (1_260_759_179_000, 1_260_759_200_000)
    (letter,) = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert (
        letter["row"] == 4 and letter["reason"] == "weight (rating): cannot read 'oops' as a number"
    )


def test_jsonl_lines_go_as_they_are_bad_ones_included(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(
        b'{"user":7,"item":"i","ts":5}\nnot json\n{"user":8,"item":"j","ts":6,"weight":0.5}\n'
    )
    sink = Recorder()
    done = replay_into(path, sink, dead_letter=tmp_path / "dead.jsonl")
    assert [r[0] for r in sink.records] == path.read_bytes().splitlines()
    assert [r[1:] for r in sink.records] == [(b"7", 5), (None, None), (b"8", 6)]
    assert done.rejected == 0 and not (tmp_path / "dead.jsonl").exists()
    sink = Recorder()
    done = replay_into(path, sink, log_format=LogFormat(min_weight=1))
    assert len(sink.records) == 2 and done.dropped == 1  # the bad line still goes, unkeyed


def test_a_missing_log_fails_before_anything_is_produced(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        replay_into(tmp_path / "nope.jsonl", Recorder())


def test_pace_combines_rate_and_speed() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    pace = Pace(rate=2, speed=10, clock=lambda: now[0], sleep=sleep)
    # 2 events/s allows event k at k/2 s; speed 10 puts 10 s of event time at 1 s
    for ts in (0, 10_000, 10_000, 10_000, 50_000, 40_000):
        pace.wait(ts)
    assert now[0] == pytest.approx(5.0)  # the 50 s event at 5 s; the older one right after
    with pytest.raises(SourceError, match="--speed must be >= 0"):
        Pace(speed=-1)


def test_speed_keeps_the_gaps_between_events(tmp_path: Path) -> None:
    """Real clock and sleeps: each gap within 10% (the sends are not batched here)."""
    gaps_ms = [1500, 800, 3000, 1000, 2200, 1200, 2600]
    ts = [1_700_000_000_000]
    for g in gaps_ms:
        ts.append(ts[-1] + g)
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"user": 1, "item": "i", "ts": t}) + "\n" for t in ts))
    sink = Recorder()
    replay_into(path, sink, speed=10)
    walls = [b - a for a, b in zip(sink.at, sink.at[1:], strict=False)]
    for wall, gap in zip(walls, gaps_ms, strict=True):
        assert wall == pytest.approx(gap / 10 / 1000, rel=0.10), (walls, gaps_ms)


def read_topic(bootstrap: str, topic: str, want: int, partitions: int = 4) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list = []
    deadline = time.monotonic() + 20
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            records += batch
    consumer.close()
    return records


def recstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=120
    )


def test_replay_a_csv_into_kafka_gives_the_jsonl_events(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    evs = list(generate(World(users=30, items=40, seed=2), 300, start_ms=1_700_000_000_000))
    write_jsonl(tmp_path / "events.jsonl", evs)
    lines = ["u,i,when,device,hour"]
    lines += [
        f"{e['user']},{e['item']},{e['ts'] // 1000},{e['context']['device']},{e['context']['hour']}"
        for e in evs
    ]
    lines.insert(50, "9,i1,not-a-time,tv,3")  # row 50
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    uri = f"kafka://{kafka_bootstrap}/{topic}"
    dead = tmp_path / "dead.jsonl"
    proc = recstream(
        "replay",
        str(tmp_path / "events.csv"),
        "--to",
        uri,
        "--map",
        "user=u,item=i,ts=when:s",
        "--context-columns",
        "device,hour",
        "--dead-letter",
        str(dead),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["produced"], summary["rejected"]) == (300, 1)
    assert json.loads(dead.read_text())["row"] == 50

    records = read_topic(kafka_bootstrap, topic, 300)
    decode = Decoder().decode
    got = sorted((decode(r.value) for r in records), key=lambda e: e.ts)
    with FileSource(tmp_path / "events.jsonl", tmp_path / "d2.jsonl") as source:
        want = source.poll(1000).events  # the CSV has no event ids: the rest must match
    assert got == [Interaction(e.user, e.item, e.ts, e.weight, None, e.context) for e in want]
    assert all(r.key == decode(r.value).user.encode() for r in records)
    assert all(r.timestamp == decode(r.value).ts for r in records)


def test_a_mapping_error_is_one_line_and_exit_2_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(RATINGS)
    for args, message in [
        (
            ["--map", "user=userid,item=movieId,ts=timestamp:s"],
            "column 'userid' is not in the header",
        ),
        (["--map", "user=userId,item=movieId,ts=timestamp:sec"], "unknown time unit 'sec'"),
    ]:
        started = time.monotonic()
        proc = recstream("replay", str(tmp_path / "r.csv"), "--to", "kafka://127.0.0.1:1/t", *args)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        errors = [x for x in proc.stderr.splitlines() if "error" in x or "recstream replay:" in x]
        assert len(errors) == 1, proc.stderr
        assert time.monotonic() - started < 30  # no wait for the (absent) broker


def test_train_refuses_a_mapping_that_does_not_fit_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(RATINGS)
    proc = recstream(
        "train", "--source", f"file://{tmp_path / 'r.csv'}", "--checkpoint-dir",
        str(tmp_path / "ckpt"), "--map", "user=userId,item=movie,ts=timestamp:s",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("recstream train: column 'movie' is not in the header of r.csv")
    assert "Traceback" not in proc.stderr and not (tmp_path / "ckpt").exists()


def test_the_mapping_is_one_toml_table_shared_by_replay_and_train(tmp_path: Path) -> None:
    from trainer.cli.flags import log_format
    from trainer.cli.main import build_parser
    from trainer.cli.resolve import resolve

    config = tmp_path / "recstream.toml"
    config.write_text(
        '[map]\nuser = "userId"\nitem = "movieId"\nts = "timestamp:s"\nweight = "rating"\n\n'
        '[train]\nmin-weight = 4\ncontext-columns = "genre"\n'
    )
    env = {"RECSTREAM_CONFIG": str(config)}
    replay = resolve(build_parser(), ["replay", "r.csv", "--to", "kafka://h:1/t"], env)
    train = resolve(
        build_parser(), ["train", "--source", "file://r.csv", "--checkpoint-dir", "c"], env
    )
    assert log_format(replay) == LogFormat(fields=FieldMap.parse(MAP))
    assert log_format(train) == LogFormat(
        fields=FieldMap(FieldMap.parse(MAP).fields, "s", (("genre", "genre"),)), min_weight=4
    )
    flag = resolve(
        build_parser(), ["replay", "r.csv", "--to", "kafka://h:1/t", "--map", "user=u"], env
    )
    assert log_format(flag).fields == FieldMap((("user", "u"),))  # the flag wins, whole
