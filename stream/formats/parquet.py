"""Parquet logs, read a row group at a time through pyarrow (the optional ``parquet`` extra).

Only the columns the mapping reads are read from disk; a row is a tuple as wide as the schema,
None in the columns not read. Memory holds one batch of one row group, never the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterator
from datetime import date, datetime
from itertools import repeat
from typing import Any

from stream.errors import MappingError, SourceError

BATCH_ROWS = 16_384  # rows decoded into Python objects at a time
MISSING_PYARROW = (
    "reading Parquet needs pyarrow, an optional extra: pip install 'recstream[parquet]'"
    " (or pip install pyarrow)"
)


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MappingError(MISSING_PYARROW) from None
    return pq


class ParquetReader:
    """Rows of a Parquet file as tuples; a position counts rows. Resuming skips whole row
    groups by their metadata, without reading them."""

    unit = "row"

    def __init__(self, path: str) -> None:
        pq = _parquet()
        import pyarrow

        self.path = path
        if not os.path.exists(path):
            raise SourceError(
                f"event log {path!r} does not exist; check the path or the file:// URI"
            )
        try:
            self._file = pq.ParquetFile(path)
        except (OSError, pyarrow.ArrowException) as e:
            raise SourceError(f"cannot read {path!r} as Parquet: {e}") from None
        self.columns: tuple[str, ...] = tuple(self._file.schema_arrow.names)
        self._used: list[int] = list(range(len(self.columns)))
        self._rows: Iterator[tuple[Any, ...]] | None = None
        self.consumed = 0

    def use(self, columns: Collection[int]) -> None:
        self._used = sorted(set(columns))

    def read(self) -> tuple[Any, ...] | None:
        if self._rows is None:
            self._rows = self._from(self.consumed)
        row = next(self._rows, None)
        if row is not None:
            self.consumed += 1
        return row

    def skip(self, records: int) -> int:
        n = min(records, self._file.metadata.num_rows - self.consumed)
        self.consumed += n
        self._rows = None
        return n

    def _from(self, start: int) -> Iterator[tuple[Any, ...]]:
        meta = self._file.metadata
        group, skip = 0, start
        while group < meta.num_row_groups and skip >= meta.row_group(group).num_rows:
            skip -= meta.row_group(group).num_rows
            group += 1
        if group == meta.num_row_groups:
            return
        names = [self.columns[i] for i in self._used]
        batches = self._file.iter_batches(
            batch_size=BATCH_ROWS,
            row_groups=range(group, meta.num_row_groups),
            columns=names,
            use_threads=False,
        )
        for batch in batches:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            if skip:
                batch, skip = batch.slice(skip), 0
            values: list[Any] = [repeat(None)] * len(self.columns)
            for i, column in zip(self._used, batch.columns, strict=True):
                values[i] = column.to_pylist()
            # the read columns end together; `repeat` never does
            yield from zip(*values, strict=False)

    def letter(self, record: Any | None) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.consumed}
        if record is not None:
            out["record"] = {self.columns[i]: _plain(record[i]) for i in self._used}
        return out

    def fingerprint(self) -> str:
        """The footer (schema, row groups, statistics): a Parquet file never grows."""
        with open(self.path, "rb") as f:
            f.seek(-8, os.SEEK_END)
            length = int.from_bytes(f.read(4), "little")
            f.seek(-(length + 8), os.SEEK_END)
            return "sha1:" + hashlib.sha1(f.read(length + 8)).hexdigest()

    def close(self) -> None:
        self._rows = None
        self._file.close()


def _plain(value: Any) -> Any:
    """A value fit for a JSON dead letter."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
