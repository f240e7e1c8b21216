"""JSONL logs, plain or gzip: one record per line, the line's bytes; blank lines are skipped."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from stream.formats.base import first_lines_digest, open_log


class JsonlReader:
    """Lines of a JSONL log; a position counts lines, blank ones included.

    The end of the file returns None; lines appended later are read by later calls (append
    whole lines: a last line without its newline is read as it stands).
    """

    columns = None
    unit = "line"

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open_log(path)
        self.consumed = 0

    def read(self) -> bytes | None:
        readline = self._file.readline
        while True:
            line = readline()
            if not line:
                return None
            self.consumed += 1
            if not line.isspace():
                return line

    def skip(self, records: int) -> int:
        readline = self._file.readline
        for done in range(records):
            if not readline():
                return done
            self.consumed += 1
        return records

    def use(self, columns: Collection[int]) -> None:
        """Lines are read whole."""

    def letter(self, record: Any | None) -> dict[str, Any]:
        raw = record.rstrip(b"\r\n") if isinstance(record, bytes) else b""
        return {"line": self.consumed, "raw": raw}

    def fingerprint(self) -> str:
        """The first line identifies a log that only grows."""
        return first_lines_digest(self.path, 1)

    def close(self) -> None:
        self._file.close()
