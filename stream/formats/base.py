"""What every log reader is: records one at a time, counted, and described for dead letters.

A *record* is what one line or row holds before it is an event: the bytes of a JSONL line, the
fields of a CSV/TSV row (a list of strings), the values of a Parquet row (a tuple). A reader
counts what it has consumed (blank lines and unreadable rows included): that count is the
position a checkpoint keeps and the number a dead letter names.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Collection, Sequence
from typing import IO, Any, Protocol

from stream.errors import SourceError

_GZIP_MAGIC = b"\x1f\x8b"


def open_log(path: str) -> IO[bytes]:
    """Open `path` for reading bytes, through gzip when its first bytes say so."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError as e:
        raise SourceError(
            f"event log {path!r} does not exist; check the path or the file:// URI"
        ) from e
    except IsADirectoryError as e:
        raise SourceError(f"event log {path!r} is a directory; name a file") from e
    except OSError as e:
        raise SourceError(f"cannot open event log {path!r}: {e.strerror}") from e
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def first_lines_digest(path: str, lines: int) -> str:
    """``sha1:<hex>`` of the first `lines` lines (decompressed), ``""`` for an empty file.

    A log that only grows keeps it; a replaced one gets another."""
    digest = hashlib.sha1()
    with open_log(path) as f:
        for _ in range(lines):
            digest.update(f.readline())
        if f.tell() == 0:
            return ""
    return "sha1:" + digest.hexdigest()


class Reader(Protocol):
    """The records of one log in file order (JSONL, CSV/TSV, Parquet).

    `columns` are the header's (or the schema's) names, None when the log has none (JSONL
    lines are objects; ``--no-header`` files are numbered from 1). `consumed` counts records
    consumed, blank and unreadable ones included: the position a checkpoint keeps.
    """

    consumed: int
    unit: str  # what `consumed` counts: "line" (JSONL) or "row"

    @property
    def columns(self) -> Sequence[str] | None: ...

    def read(self) -> Any | None:
        """The next non-blank record, or None at the end (for now: a growing log may go on).

        An unreadable record (a CSV row the parser refuses) raises `InvalidEvent`; it is
        consumed, and the next call goes on after it."""
        ...

    def skip(self, records: int) -> int:
        """Consume `records` records without returning them (resuming); returns how many
        there were, fewer when the log is shorter."""
        ...

    def use(self, columns: Collection[int]) -> None:
        """The column positions the mapping reads: a columnar reader reads only those."""
        ...

    def letter(self, record: Any | None) -> dict[str, Any]:
        """What a dead letter says of the record just read, besides its reason: its position
        (``line``, ``row``) and its content (``raw`` bytes or a ``record`` object)."""
        ...

    def fingerprint(self) -> str:
        """What identifies this log while it grows (see `EventSource.identity`)."""
        ...

    def close(self) -> None: ...
