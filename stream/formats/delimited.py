"""CSV and TSV logs, plain or gzip, read row by row with the `csv` module.

CSV follows RFC 4180 (quoted fields may hold the delimiter, quotes and newlines); TSV has no
quoting (a quote is an ordinary character, as in MovieLens' ``u.data`` or Postgres' COPY). The
first row is the header unless ``header=False``; then columns are numbered from 1, as ``cut``
numbers them. Text is UTF-8 (a byte-order mark is skipped); bytes that are not UTF-8 reach the
mapping as they are and the row is dead-lettered only if a mapped field holds them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from typing import Any

from stream.errors import InvalidEvent, MappingError
from stream.formats.base import first_lines_digest, open_log

DELIMITERS = {"csv": ",", "tsv": "\t"}


class DelimitedReader:
    """Rows of a CSV or TSV file as lists of strings; a position counts data rows (the header
    excluded, blank rows included). Rows appended later are read by later calls."""

    unit = "row"

    def __init__(
        self, path: str, delimiter: str = ",", header: bool = True, quoting: bool = True
    ) -> None:
        self.path = path
        self._delimiter = delimiter
        self._file = open_log(path)
        self._text = io.TextIOWrapper(
            self._file, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        self._rows = csv.reader(
            self._text,
            delimiter=delimiter,
            quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
            strict=quoting,
        )
        self.consumed = 0
        self.columns: tuple[str, ...] | None = None
        self._header = header
        if header:
            try:
                first = next(self._rows, None)
            except csv.Error as e:
                raise MappingError(f"{path}: cannot read the header row: {e}") from None
            if not first:
                self.close()
                raise MappingError(
                    f"{path}: no header row (the file is empty or starts with a blank line);"
                    " give --no-header if the file has none"
                )
            self.columns = tuple(name.strip() for name in first)

    def read(self) -> list[str] | None:
        rows = self._rows
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return None
            except csv.Error as e:
                self.consumed += 1
                raise InvalidEvent(f"unreadable row: {e}") from None
            self.consumed += 1
            if row and (len(row) > 1 or row[0].strip()):
                return row

    def skip(self, records: int) -> int:
        for done in range(records):
            try:
                if next(self._rows, None) is None:
                    return done
            except csv.Error:
                pass  # unreadable, but consumed: it counts
            self.consumed += 1
        return records

    def use(self, columns: Collection[int]) -> None:
        """Rows are parsed whole."""

    def letter(self, record: Any | None) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.consumed, "line": self._rows.line_num}
        if record is not None:
            out["raw"] = self._delimiter.join(record).encode("utf-8", "surrogateescape")
        return out

    def fingerprint(self) -> str:
        """The header and the first data row (the header alone says little: exports share it)."""
        return first_lines_digest(self.path, 2 if self._header else 1)

    def close(self) -> None:
        self._text.close()  # and the file under it
