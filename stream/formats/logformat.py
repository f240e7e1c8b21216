"""How to read one log: its format (from the file name, or given), its field mapping, and the
least weight an event must have to be kept.

>>> format_of("ratings.csv.gz"), format_of("u.data", "tsv"), format_of("events.log")
('csv', 'tsv', 'jsonl')
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from stream.errors import MappingError
from stream.formats.base import Reader, open_log
from stream.formats.delimited import DELIMITERS, DelimitedReader
from stream.formats.fieldmap import FieldMap, RecordMapper
from stream.formats.jsonl import JsonlReader
from stream.formats.parquet import ParquetReader

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "tsv", "parquet")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def format_of(path: str | os.PathLike[str], given: str | None = None) -> str:
    """`given`, else the format its extension names (``.gz`` looked through), else JSONL."""
    if given is not None:
        if given not in FORMATS:
            raise MappingError(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    name = os.fspath(path).lower().removesuffix(".gz")
    return _SUFFIXES.get(os.path.splitext(name)[1], "jsonl")


@dataclass(frozen=True)
class LogFormat:
    """`format` None: from the file name. `header` and `delimiter` (None: ``,`` for CSV, a tab
    for TSV) concern CSV and TSV only. Events with a weight below `min_weight` are dropped and
    counted, not dead-lettered: a filter (ratings as implicit feedback), not an error."""

    format: str | None = None
    fields: FieldMap = FieldMap()  # noqa: RUF009 (frozen, so immutable)
    header: bool = True
    delimiter: str | None = None
    min_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.format is not None:
            format_of("", self.format)
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise MappingError(f"a delimiter is one character, got {self.delimiter!r}")
        if not (math.isfinite(self.min_weight) and self.min_weight >= 0):
            raise MappingError(f"the minimum weight must be a number >= 0, got {self.min_weight}")

    def kind(self, path: str | os.PathLike[str]) -> str:
        return format_of(path, self.format)

    def lines_as_events(self, path: str | os.PathLike[str]) -> bool:
        """A JSONL log read without a mapping: each line is an event as it stands."""
        return self.kind(path) == "jsonl" and not self.fields.given

    def open(self, path: str) -> tuple[Reader, RecordMapper | None]:
        """A reader of `path` and the mapper bound to its columns (None: lines are events).

        Raises `MappingError` at once when the mapping does not fit the file's columns."""
        kind = self.kind(path)
        delimited = kind in DELIMITERS
        if not delimited and (self.delimiter is not None or not self.header):
            raise MappingError(
                f"{path}: a delimiter and --no-header apply to CSV and TSV, not {kind}"
            )
        reader: Reader
        if kind == "jsonl":
            reader = JsonlReader(path)
            if self.format is None:
                _check_guess(path)
        elif delimited:
            delimiter = self.delimiter or DELIMITERS[kind]
            reader = DelimitedReader(path, delimiter, self.header, quoting=kind == "csv")
        else:
            reader = ParquetReader(path)
        if kind == "jsonl" and not self.fields.given:
            return reader, None
        try:
            mapper = self.fields.bind(
                reader.columns, keyed=kind == "jsonl", source=os.path.basename(path)
            )
        except MappingError:
            reader.close()
            raise
        reader.use(mapper.columns)
        return reader, mapper


def _check_guess(path: str) -> None:
    """Warn when a file read as JSONL for want of a known extension does not look like it."""
    if os.path.splitext(path.lower().removesuffix(".gz"))[1] in _SUFFIXES:
        return
    with open_log(path) as f:
        head = f.read(4096).lstrip()
    if head and not head.startswith(b"{"):
        log.warning(
            "%s is read as JSONL (its name names no format) but does not start with a JSON"
            " object; give --format csv, tsv or parquet if it is one of those",
            path,
        )
