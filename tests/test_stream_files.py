"""The JSONL log source: plain and gzip, resume, blank lines, dead letters."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from stream.errors import SourceError
from stream.event import Interaction, encode
from stream.files import FileSource, iter_lines
from stream.source import EventSource

GOOD = [encode({"user": n, "item": f"i{n % 3}", "ts": 1000 + n}) for n in range(10)]


def lines_file(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def read_all(source: FileSource, max_events: int = 3) -> tuple[list[Interaction], dict, int]:
    events, offsets, rejected = [], {}, 0
    while True:
        batch = source.poll(max_events, 0.0)
        events += batch.events
        offsets.update(batch.offsets)
        rejected += batch.rejected
        if not batch.events and not batch.offsets:
            return events, offsets, rejected


@pytest.fixture(params=["events.jsonl", "events.jsonl.gz"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return lines_file(tmp_path / request.param, GOOD)


def test_reads_every_line_in_batches(log: Path, tmp_path: Path) -> None:
    with FileSource(log, tmp_path / "dead.jsonl") as source:
        assert isinstance(source, EventSource)
        first = source.poll(4, 0.0)
        assert [e.user for e in first.events] == ["0", "1", "2", "3"]
        assert first.offsets == {f"file:{log}": 4} and first.rejected == 0
        events, offsets, _ = read_all(source)
        assert [e.ts for e in events] == list(range(1004, 1010))
        assert offsets == {f"file:{log}": 10}
        assert source.poll(4, 0.0).offsets == {}  # the end: empty batches
        assert source.lag() == {f"file:{log}": 0}


def test_resumes_after_the_lines_consumed(log: Path, tmp_path: Path) -> None:
    with FileSource(log, tmp_path / "dead.jsonl") as source:
        offsets = source.poll(6, 0.0).offsets
    with FileSource(log, tmp_path / "dead.jsonl", start_offsets=offsets) as resumed:
        events, final, _ = read_all(resumed)
    assert [e.user for e in events] == ["6", "7", "8", "9"]
    assert final == {f"file:{log}": 10}


def test_start_offsets_of_other_sources_are_ignored(log: Path, tmp_path: Path) -> None:
    others = {"file:/elsewhere.jsonl": 5, "clicks:0": 3}
    with FileSource(log, tmp_path / "dead.jsonl", start_offsets=others) as source:
        assert len(read_all(source)[0]) == 10


def test_start_offset_past_the_end_is_refused(log: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"start offset 11 .* is past its end \(10 lines\)"):
        FileSource(log, tmp_path / "dead.jsonl", start_offsets={f"file:{log}": 11})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.jsonl' does not exist"):
        FileSource(tmp_path / "nope.jsonl", tmp_path / "dead.jsonl")


def test_bad_lines_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    bad_utf8 = b'{"user": "\xff", "item": "i", "ts": 1}'
    lines = [GOOD[0], b"{oops", b"", b"   ", b'{"user": 1, "item": "i"}', bad_utf8, GOOD[1]]
    log = lines_file(tmp_path / "mixed.jsonl", lines)
    dead = tmp_path / "dead.jsonl"
    with FileSource(log, dead) as source:
        events, offsets, rejected = read_all(source, max_events=10)
        source.flush()
        letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [e.user for e in events] == ["0", "1"]
    assert offsets == {f"file:{log}": 7}  # blank lines are consumed, not rejected
    assert rejected == 3 == len(letters)
    assert letters[0] == {
        "reason": letters[0]["reason"],
        "source": f"file:{log}",
        "line": 2,
        "raw": "{oops",
    }
    assert letters[0]["reason"].startswith("not JSON")
    assert letters[1]["line"] == 5 and letters[1]["reason"].startswith("missing ts")
    assert letters[2]["line"] == 6 and "raw" not in letters[2]
    assert base64.b64decode(letters[2]["raw_b64"]) == bad_utf8


def test_dead_letters_are_appended_across_runs(tmp_path: Path) -> None:
    log = lines_file(tmp_path / "bad.jsonl", [b"nope"])
    dead = tmp_path / "dead.jsonl"
    for _ in range(2):
        with FileSource(log, dead) as source:
            assert source.poll(5, 0.0).rejected == 1
    assert len(dead.read_text().splitlines()) == 2


def test_lines_appended_later_are_read(tmp_path: Path) -> None:
    log = lines_file(tmp_path / "growing.jsonl", GOOD[:2])
    with FileSource(log, tmp_path / "dead.jsonl") as source:
        assert len(source.poll(10, 0.0).events) == 2
        assert source.poll(10, 0.0).events == []
        with log.open("ab") as f:
            f.write(GOOD[2] + b"\n")
        batch = source.poll(10, 0.0)
    assert [e.user for e in batch.events] == ["2"] and batch.offsets == {f"file:{log}": 3}


def test_identity_is_stable_while_the_log_grows(tmp_path: Path) -> None:
    log = lines_file(tmp_path / "a.jsonl", GOOD[:3])
    with FileSource(log, tmp_path / "dead.jsonl") as source:
        before = source.identity()
    lines_file(log, GOOD)
    with FileSource(log, tmp_path / "dead.jsonl") as source:
        assert source.identity() == before
    lines_file(log, GOOD[1:])
    with FileSource(log, tmp_path / "dead.jsonl") as source:
        assert source.identity() != before
        assert list(source.identity()) == [f"file:{log}"]


def test_relative_path_is_keyed_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines_file(tmp_path / "rel.jsonl", GOOD[:1])
    monkeypatch.chdir(tmp_path)
    with FileSource("rel.jsonl", "dead.jsonl") as source:
        assert source.poll(5, 0.0).offsets == {f"file:{tmp_path / 'rel.jsonl'}": 1}


def test_iter_lines_reads_plain_and_gzip_without_blanks(tmp_path: Path) -> None:
    for name in ("x.jsonl", "x.jsonl.gz"):
        log = lines_file(tmp_path / name, [GOOD[0], b"", b"  ", GOOD[1] + b"\r"])
        assert list(iter_lines(log)) == [GOOD[0], GOOD[1]]
