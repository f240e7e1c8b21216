"""Replay is just another source: an event log (JSONL, CSV, TSV or Parquet; gzip too) read
record by record into the same `Interaction` batches as the Kafka source."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from stream.deadletter import DeadLetterFile
from stream.errors import SourceError
from stream.event import Decoder, Interaction
from stream.formats import EventReader, LogFormat
from stream.formats.base import open_log
from stream.source import Batch

log = logging.getLogger(__name__)


def iter_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The non-blank lines of a JSONL log (plain or gzip), without their line endings."""
    with open_log(os.fspath(path)) as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line and not line.isspace():
                yield line


class FileSource:
    """An `EventSource` over an event log; the position counts records consumed: lines of a
    JSONL log, data rows of a CSV/TSV file (header excluded), rows of a Parquet file.

    `log_format` says how to read it (format, field mapping, minimum weight; by default a
    JSONL log, or a CSV/TSV/Parquet file named so whose columns are called like the event's
    fields). Records are decoded without a record timestamp, so one without `ts` is rejected.
    Bad records are appended to `dead_letter_path` (see `stream.deadletter`) with their line
    or row number and the reason; events below the minimum weight are dropped and counted in
    `dropped`. Blank lines count as consumed. The end of the file yields empty batches; lines
    appended later are read on later polls (append whole lines: a last line without its
    newline is read as it stands).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dead_letter_path: str | os.PathLike[str],
        start_offsets: dict[str, int] | None = None,
        decoder: Decoder | None = None,
        log_format: LogFormat | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.key = f"file:{self.path}"
        self._dead = DeadLetterFile(dead_letter_path, self.key)
        self._events = EventReader(
            self.path, log_format or LogFormat(), decoder or Decoder(), self._dead.write
        )
        self._reader = self._events.reader
        self._at_end = False
        try:
            self._identity = self._reader.fingerprint()
            self._skip((start_offsets or {}).get(self.key, 0))
        except BaseException:
            self._events.close()
            raise

    def _skip(self, records: int) -> None:
        if records < 0:
            raise SourceError(
                f"start offset {records} for {self.key} is negative; it counts {self._reader.unit}s"
            )
        done = self._reader.skip(records)
        if done < records:
            raise SourceError(
                f"start offset {records} for {self.key} is past its end"
                f" ({done} {self._reader.unit}s): the log was truncated or replaced;"
                " start from 0 or point at the right file"
            )

    @property
    def dropped(self) -> int:
        """Events below the minimum weight skipped so far (not dead-lettered)."""
        return self._events.dropped

    def poll(self, max_events: int, timeout_s: float = 0.0) -> Batch:
        """Read records until `max_events` are valid or the file ends; never waits."""
        events: list[Interaction] = []
        start, rejected = self._reader.consumed, self._events.rejected
        if self._events.fill(events, max_events):
            self._at_end = False
        else:
            if not self._at_end:
                self._log_end()
            self._at_end = True
        n = self._reader.consumed
        return Batch(events, {self.key: n} if n != start else {}, self._events.rejected - rejected)

    def _log_end(self) -> None:
        log.info(
            "%s: at the end after %d %ss; %d rejected (dead letters in %s), %d dropped below"
            " the minimum weight",
            self.path,
            self._reader.consumed,
            self._reader.unit,
            self._events.rejected,
            self._dead.path,
            self._events.dropped,
        )

    def flush(self) -> None:
        """Write the dead letters so far through to disk (flush and fsync)."""
        self._dead.flush()

    def commit(self, offsets: dict[str, int]) -> None:
        """Nothing to do: a file's position lives only in the trainer's checkpoint."""

    def lag(self) -> dict[str, int]:
        """``{key: 0}`` once the end of the file has been reached, else unknown (``{}``)."""
        return {self.key: 0} if self._at_end else {}

    def ready(self) -> bool:
        return True

    def identity(self) -> dict[str, str]:
        """``{"file:<path>": "sha1:<hash>"}`` of the first line (JSONL), the header and first
        row (CSV/TSV) or the footer (Parquet); stable while the log grows."""
        return {self.key: self._identity}

    def close(self) -> None:
        """Flush the dead letters and close both files."""
        self._dead.close()
        self._events.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
