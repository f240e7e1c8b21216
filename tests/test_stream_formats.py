"""Logs in other shapes: CSV, TSV (with and without a header), gzip, Parquet and mapped JSONL,
read through a field mapping into the same events as the JSONL they were made from; mapping
errors at start; bad rows dead-lettered with their position; the minimum weight; resuming."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream.errors import MappingError, SourceError
from stream.event import Interaction
from stream.files import FileSource
from stream.formats import FieldMap, LogFormat, format_of
from stream.synthetic import World, generate, write_jsonl

T0 = 1_700_000_000_000  # a whole second, so a time in seconds round-trips
WEIGHTS = [None, 0.5, 2.0, 1.0, 4.5]


def events(n: int = 60) -> list[dict[str, Any]]:
    """Synthetic events with the whole event format: event ids, weights (or none), context."""
    out = []
    for k, e in enumerate(generate(World(users=20, items=30, seed=5), n, start_ms=T0)):
        w = WEIGHTS[k % len(WEIGHTS)]
        if w is not None:
            e["weight"] = w
        out.append(e)
    return out


def read_all(source: FileSource, max_events: int = 7) -> tuple[list[Interaction], int]:
    got, rejected = [], 0
    while True:
        batch = source.poll(max_events, 0.0)
        got += batch.events
        rejected += batch.rejected
        if not batch.events and not batch.offsets:
            return got, rejected


def read(path: Path, tmp_path: Path, fmt: LogFormat | None = None) -> list[Interaction]:
    with FileSource(path, tmp_path / "dead.jsonl", log_format=fmt) as source:
        got, rejected = read_all(source)
    assert rejected == 0, (tmp_path / "dead.jsonl").read_text()
    return got


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


RENAMED = ["userId", "movieId", "rating", "timestamp", "eid", "device", "hour"]


def row(e: dict[str, Any], ts: Any) -> list[Any]:
    ctx = e["context"]
    return [
        e["user"],
        e["item"],
        e.get("weight", ""),
        ts,
        e["event_id"],
        ctx["device"],
        ctx["hour"],
    ]


def write_delimited(path: Path, rows: list[list[Any]], delimiter: str, header: bool) -> Path:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        if header:
            w.writerow(RENAMED)
        w.writerows(rows)
    return path


def mapping(ts: str, ctx: str = "device,hour", **kw: Any) -> LogFormat:
    fields = FieldMap.parse(f"user=userId,item=movieId,weight=rating,event_id=eid,ts={ts}")
    fields = FieldMap(fields.fields, fields.ts_unit, FieldMap.parse_context(ctx))
    return LogFormat(fields=fields, **kw)


def write_parquet(path: Path, evs: list[dict[str, Any]], ts_type: str, groups: int = 1) -> Path:
    import pyarrow as pa  # the `parquet` extra, which `make` installs: CI runs these tests
    import pyarrow.parquet as pq

    ts: Any = [e["ts"] for e in evs]
    if ts_type == "timestamp":
        ts = pa.array([datetime.fromtimestamp(t / 1000, UTC) for t in ts], pa.timestamp("ms"))
    table = pa.table(
        {
            "userId": [e["user"] for e in evs],
            "movieId": [e["item"] for e in evs],
            "rating": [e.get("weight") for e in evs],
            "timestamp": ts,
            "eid": [e["event_id"] for e in evs],
            "device": [e["context"]["device"] for e in evs],
            "hour": [e["context"]["hour"] for e in evs],
            "unused": ["x" * 50] * len(evs),
        }
    )
    pq.write_table(table, path, row_group_size=max(1, len(evs) // groups))
    return path


def variants(tmp: Path, evs: list[dict[str, Any]]) -> dict[str, tuple[Path, LogFormat]]:
    """The same events in every shape, each with the mapping that reads it."""
    secs = [row(e, e["ts"] // 1000) for e in evs]
    return {
        "csv, ts in s": (write_delimited(tmp / "r.csv", secs, ",", True), mapping("timestamp:s")),
        "csv.gz, ts iso": (
            write_delimited(tmp / "r.csv.gz", [row(e, iso(e["ts"])) for e in evs], ",", True),
            mapping("timestamp:iso"),
        ),
        "tsv, ts in ms": (
            write_delimited(tmp / "r.tsv", [row(e, e["ts"]) for e in evs], "\t", True),
            mapping("timestamp:ms"),
        ),
        "tsv without header, --format": (
            write_delimited(tmp / "u.data", secs, "\t", False),
            LogFormat(
                format="tsv",
                header=False,
                fields=FieldMap(
                    FieldMap.parse("user=1,item=2,weight=3,ts=4:s,event_id=5").fields,
                    "s",
                    FieldMap.parse_context("device=6,hour=7"),
                ),
            ),
        ),
        "jsonl through a mapping": (
            _renamed_jsonl(tmp / "renamed.jsonl", evs),
            mapping("timestamp:s"),
        ),
    }


def _renamed_jsonl(path: Path, evs: list[dict[str, Any]]) -> Path:
    lines = []
    for e in evs:
        obj = dict(zip(RENAMED, row(e, e["ts"] // 1000), strict=True))
        if obj["rating"] == "":
            del obj["rating"]
        lines.append(json.dumps(obj))
    path.write_text("\n".join(lines) + "\n")
    return path


CASES = [
    "csv, ts in s",
    "csv.gz, ts iso",
    "tsv, ts in ms",
    "tsv without header, --format",
    "jsonl through a mapping",
]


@pytest.mark.parametrize("case", CASES)
def test_every_format_reads_the_same_events_as_the_jsonl(case: str, tmp_path: Path) -> None:
    evs = events()
    write_jsonl(tmp_path / "events.jsonl", evs)
    want = read(tmp_path / "events.jsonl", tmp_path)
    assert len(want) == len(evs) and {e.weight for e in want} == {0.5, 1.0, 2.0, 4.5}
    path, fmt = variants(tmp_path, evs)[case]
    assert read(path, tmp_path, fmt) == want


@pytest.mark.parametrize("ts_type", ["timestamp", "int ms"])
def test_parquet_reads_the_same_events_as_the_jsonl(ts_type: str, tmp_path: Path) -> None:
    evs = events()
    write_jsonl(tmp_path / "events.jsonl", evs)
    path = write_parquet(tmp_path / "r.parquet", evs, ts_type, groups=4)
    got = read(path, tmp_path, mapping("timestamp:ms"))
    assert got == read(tmp_path / "events.jsonl", tmp_path)


def test_a_csv_named_like_the_event_needs_no_mapping(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("item,user,ts,note\ni1,u1,5,x\ni2,u2,6,y\n")
    assert read(path, tmp_path) == [Interaction("u1", "i1", 5), Interaction("u2", "i2", 6)]


def test_format_comes_from_the_name_or_is_given() -> None:
    assert format_of("a/b.CSV") == "csv" and format_of("x.tsv.gz") == "tsv"
    assert format_of("x.parquet") == "parquet" and format_of("x.ndjson") == "jsonl"
    assert format_of("events.log") == "jsonl" and format_of("u.data", "tsv") == "tsv"
    with pytest.raises(MappingError, match="unknown format 'xls'"):
        format_of("x.csv", "xls")


HEADER = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "user=userId,item=movieId,ts=timestamp:sec",
            "unknown time unit 'sec'; use :s, :ms or :iso",
        ),
        ("usr=userId", "unknown field 'usr'; map user, item, ts, weight, event_id"),
        ("user=userId,user=movieId", "user is mapped twice"),
        ("user", "'user' is not FIELD=COLUMN"),
        ("weight=rating:s", "only ts takes a time unit"),
    ],
)
def test_a_bad_mapping_is_refused_when_parsed(text: str, problem: str) -> None:
    with pytest.raises(MappingError) as caught:
        FieldMap.parse(text)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("fmt", "problem"),
    [
        (
            LogFormat(fields=FieldMap.parse("user=userid,item=movieId,ts=timestamp:s")),
            "column 'userid' is not in the header of r.csv; did you mean 'userId'? "
            "(columns: userId, movieId, rating, timestamp)",
        ),
        (
            LogFormat(fields=FieldMap.parse("user=userId,item=movieId")),
            "no column for ts in r.csv: map one with --map ts=COLUMN:s|ms|iso",
        ),
        (
            LogFormat(header=False, fields=FieldMap.parse("user=userId,item=2,ts=4:s")),
            "has no header (--no-header): name columns by number from 1, e.g. user=1",
        ),
        (LogFormat(format="parquet"), "cannot read"),
        (LogFormat(delimiter=";", format="jsonl"), "apply to CSV and TSV, not jsonl"),
    ],
)
def test_a_mapping_that_does_not_fit_the_file_fails_at_open(
    fmt: LogFormat, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER)
    with pytest.raises(SourceError) as caught:
        FileSource(path, tmp_path / "dead.jsonl", log_format=fmt)
    assert problem in str(caught.value)
    assert not (tmp_path / "dead.jsonl").exists()


def test_parquet_without_pyarrow_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    (tmp_path / "r.parquet").write_bytes(b"PAR1")
    with pytest.raises(MappingError, match=r"pip install 'recstream\[parquet\]'"):
        FileSource(tmp_path / "r.parquet", tmp_path / "dead.jsonl")


def test_bad_rows_are_dead_lettered_with_their_row_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(
        b"userId,movieId,rating,timestamp\n"
        b"1,31,2.5,1260759144\n"  # row 1
        b"2,31,2.5,yesterday\n"  # row 2: bad time
        b",31,2.5,1260759144\n"  # row 3: empty user
        b"3,31\n"  # row 4: too short
        b"\n"  # row 5: blank, consumed, not an error
        b"4,31,good,1260759144\n"  # row 6: bad weight
        b"5,31,-1,1260759144\n"  # row 7: negative weight (the decoder's check)
        b"\xff,31,2,1260759144\n"  # row 8: not UTF-8
        b'6,"multi\nline",3,1260759144\n'  # row 9: quoted newline, a good row over two lines
        b'7,"31"x,3,1260759144\n'  # row 10: bad quoting
        b"8,32,3,1260759145\n"  # row 11
    )
    fmt = LogFormat(fields=FieldMap.parse("user=userId,item=movieId,ts=timestamp:s,weight=rating"))
    with FileSource(path, tmp_path / "dead.jsonl", log_format=fmt) as source:
        got, rejected = read_all(source)
    letters = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [e.user for e in got] == ["1", "6", "8"] and got[1].item == "multi\nline"
    assert rejected == len(letters) == 7
    where = [(x["row"], x["line"]) for x in letters]
    assert where == [(2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 12)]
    reasons = [x["reason"] for x in letters]
    assert reasons[0] == "ts (timestamp): cannot read 'yesterday' as seconds"
    assert reasons[1] == "user must be a non-empty string or integer, got ''"
    assert reasons[2] == "the row has 2 fields; the mapping reads field 4"
    assert reasons[3] == "weight (rating): cannot read 'good' as a number"
    assert reasons[4] == "weight must be finite and >= 0, got -1.0"
    assert reasons[5].startswith("not UTF-8")
    assert reasons[6].startswith("unreadable row:")
    assert letters[0]["raw"] == "2,31,2.5,yesterday" and letters[0]["source"] == f"file:{path}"
    assert "raw_b64" in letters[5] and "raw" not in letters[5]


def test_parquet_bad_rows_name_their_row(tmp_path: Path) -> None:
    evs = events(10)
    evs[3]["user"] = None
    path = write_parquet(tmp_path / "r.parquet", evs, "int ms", groups=3)
    with FileSource(path, tmp_path / "dead.jsonl", log_format=mapping("timestamp")) as source:
        got, rejected = read_all(source)
    (letter,) = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(got) == 9 and rejected == 1
    assert letter["row"] == 4 and letter["reason"] == "user (userId) is null"
    assert letter["record"]["movieId"] == evs[3]["item"] and "unused" not in letter["record"]


def test_events_below_the_minimum_weight_are_dropped_not_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n1,a,5,1\n1,b,3.5,2\n2,c,4,3\n2,d,1,4\n3,e,x,5\n"
    )
    fields = FieldMap.parse("user=userId,item=movieId,ts=timestamp:s,weight=rating")
    with FileSource(
        path, tmp_path / "dead.jsonl", log_format=LogFormat(fields=fields, min_weight=4)
    ) as source:
        batch = source.poll(100)
        assert [e.item for e in batch.events] == ["a", "c"]
        assert source.dropped == 2 and batch.rejected == 1  # the bad weight is an error
        assert batch.offsets == {f"file:{path}": 5}


def test_jsonl_lines_are_filtered_by_weight_too(tmp_path: Path) -> None:
    evs = events(20)
    write_jsonl(tmp_path / "e.jsonl", evs)
    got = read(tmp_path / "e.jsonl", tmp_path, LogFormat(min_weight=2))
    assert [e.event_id for e in got] == [e["event_id"] for e in evs if e.get("weight", 1) >= 2]


@pytest.mark.parametrize("shape", ["csv", "parquet"])
def test_resume_after_the_rows_consumed(shape: str, tmp_path: Path) -> None:
    evs = events(50)
    if shape == "csv":
        path = write_delimited(tmp_path / "r.csv", [row(e, e["ts"]) for e in evs], ",", True)
    else:
        path = write_parquet(tmp_path / "r.parquet", evs, "int ms", groups=5)  # 10 rows each
    fmt = mapping("timestamp")
    dead = tmp_path / "dead.jsonl"
    with FileSource(path, dead, log_format=fmt) as source:
        whole, _ = read_all(source)
    with FileSource(path, dead, log_format=fmt) as source:
        offsets = source.poll(23).offsets
    assert offsets == {f"file:{path}": 23}
    with FileSource(path, dead, start_offsets=offsets, log_format=fmt) as resumed:
        rest, _ = read_all(resumed)
    assert rest == whole[23:]
    with pytest.raises(SourceError, match=r"start offset 51 .* is past its end \(50 rows\)"):
        FileSource(path, dead, start_offsets={f"file:{path}": 51}, log_format=fmt)


def test_rows_appended_later_are_read(tmp_path: Path) -> None:
    path = tmp_path / "grow.csv"
    path.write_text("user,item,ts\nu1,i1,1\n")
    with FileSource(path, tmp_path / "dead.jsonl") as source:
        assert len(source.poll(10).events) == 1
        assert source.poll(10).events == [] and source.lag() == {f"file:{path}": 0}
        with path.open("a") as f:
            f.write("u2,i2,2\n")
        batch = source.poll(10)
    assert [e.user for e in batch.events] == ["u2"] and batch.offsets == {f"file:{path}": 2}


def test_identity_of_a_table_is_its_header_and_first_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,ts\nu1,i1,1\n")
    with FileSource(path, tmp_path / "dead.jsonl") as source:
        before = source.identity()
    path.write_text("user,item,ts\nu1,i1,1\nu2,i2,2\n")  # grown: the same log
    with FileSource(path, tmp_path / "dead.jsonl") as source:
        assert source.identity() == before
    path.write_text("user,item,ts\nu9,i1,1\n")  # another export with the same header
    with FileSource(path, tmp_path / "dead.jsonl") as source:
        assert source.identity() != before


def test_parquet_identity_changes_with_the_file(tmp_path: Path) -> None:
    evs = events(10)
    a = write_parquet(tmp_path / "a.parquet", evs, "int ms")
    with FileSource(a, tmp_path / "dead.jsonl", log_format=mapping("timestamp")) as source:
        first = source.identity()[f"file:{a}"]
    write_parquet(a, evs[1:], "int ms")
    with FileSource(a, tmp_path / "dead.jsonl", log_format=mapping("timestamp")) as source:
        assert source.identity()[f"file:{a}"] not in ("", first)


_REPLAY_COUNTING = """
import json, sys
from stream.formats import FieldMap, LogFormat
from stream.replay import replay_into

def rss_kb(field):
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith(field)).split()[1])

class Counting:
    n, base = 0, None
    def send(self, value, key=None, timestamp_ms=None):
        self.n += 1
        if self.n == 50_000:
            self.base = rss_kb("VmRSS:")

sink = Counting()
fmt = LogFormat(fields=FieldMap.parse("user=userId,item=movieId,ts=timestamp:s,weight=rating"))
done = replay_into(sys.argv[1], sink, log_format=fmt, dead_letter=sys.argv[2])
print(json.dumps({"sent": sink.n, "rejected": done.rejected, "base_kb": sink.base,
                  "peak_kb": rss_kb("VmHWM:"), "seconds": done.seconds}))
"""


@pytest.mark.slow
def test_a_2gb_csv_replays_with_flat_memory(tmp_path: Path) -> None:
    """A 2 GB CSV written here in chunks, replayed in a child process by `replay_into`: the CSV
    reader, the mapping, the decoder and the send loop of `recstream replay`, into a counting
    sink (producing 2 GB into the local broker would keep it all in the broker's memory and take
    several times longer). The child's peak RSS stays within 100 MB of its RSS after the first
    50,000 rows, and under 300 MB. About 80 s here: 3.4M rows of ~630 bytes (a wide unmapped
    column), one bad row in 10,000."""
    import subprocess
    import sys

    path = tmp_path / "big.csv"
    filler = "x" * 600
    rows = bad = 0
    with path.open("w") as f:
        f.write("userId,movieId,rating,timestamp,comment\n")
        while f.tell() < 2 * 1024**3:
            chunk = [
                f"{n * 7919 % 100_000},{n * 104_729 % 20_000},{n % 5 + 1}.5,{1_600_000_000 + n},"
                f"{filler}\n"
                for n in range(rows, rows + 10_000)
            ]
            chunk[5] = f"{rows},i,4,not-a-time,{filler}\n"  # one bad row per chunk
            f.write("".join(chunk))
            rows, bad = rows + 10_000, bad + 1
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _REPLAY_COUNTING, str(path), str(tmp_path / "dead.jsonl")],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        path.unlink()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert (out["sent"], out["rejected"]) == (rows - bad, bad)
    growth_mb, peak_mb = (out["peak_kb"] - out["base_kb"]) / 1024, out["peak_kb"] / 1024
    print(f"{rows:,} rows in {out['seconds']:.0f} s, peak RSS {peak_mb:.0f} MB (+{growth_mb:.1f})")
    assert growth_mb < 100, out
    assert peak_mb < 300, out  # a reader that loaded the file at open would be flat after it
