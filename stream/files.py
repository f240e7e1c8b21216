"""Replay is just another source: a JSONL event log (plain or gzip) read line by line."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
from collections.abc import Iterator
from typing import IO

import msgspec

from stream.errors import InvalidEvent, SourceError
from stream.event import Decoder, Interaction
from stream.source import Batch

_GZIP_MAGIC = b"\x1f\x8b"
_encode = msgspec.json.Encoder().encode


def _open(path: str) -> IO[bytes]:
    """Open `path` for reading bytes, through gzip when its first bytes say so."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError as e:
        raise SourceError(
            f"event log {path!r} does not exist; check the path or the file:// URI"
        ) from e
    except OSError as e:
        raise SourceError(f"cannot open event log {path!r}: {e.strerror}") from e
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def iter_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The non-blank lines of a JSONL log (plain or gzip), without their line endings."""
    with _open(os.fspath(path)) as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line and not line.isspace():
                yield line


class FileSource:
    """An `EventSource` over a JSONL log; the position is the number of lines consumed.

    Lines are decoded without a record timestamp, so a line without `ts` is rejected. Bad
    lines are appended to `dead_letter_path` as JSON objects ``{"reason", "source", "line",
    "raw"}`` (``"raw_b64"`` when the bytes are not UTF-8). Blank lines count as consumed.
    The end of the file yields empty batches; lines appended later are read on later polls
    (append whole lines: a last line without its newline is read as it stands).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dead_letter_path: str | os.PathLike[str],
        start_offsets: dict[str, int] | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.key = f"file:{self.path}"
        self._dead_letter_path = os.fspath(dead_letter_path)
        self._dead: IO[bytes] | None = None
        self._decoder = decoder or Decoder()
        self._file = _open(self.path)
        self._identity = self._fingerprint()
        self._consumed = 0
        self._at_end = False
        skip = (start_offsets or {}).get(self.key, 0)
        if skip < 0:
            raise SourceError(f"start offset {skip} for {self.key} is negative; it counts lines")
        self._skip(skip)

    def _fingerprint(self) -> str:
        # The first line identifies a log that only grows; a replaced file gets a new one.
        with _open(self.path) as f:
            first = f.readline()
        return "sha1:" + hashlib.sha1(first).hexdigest() if first else ""

    def _skip(self, lines: int) -> None:
        readline = self._file.readline
        for done in range(lines):
            if not readline():
                raise SourceError(
                    f"start offset {lines} for {self.key} is past its end ({done} lines):"
                    " the log was truncated or replaced; start from 0 or point at the right file"
                )
        self._consumed = lines

    def poll(self, max_events: int, timeout_s: float = 0.0) -> Batch:
        """Read lines until `max_events` are valid or the file ends; never waits."""
        events: list[Interaction] = []
        rejected = 0
        readline = self._file.readline
        decode = self._decoder.decode
        append = events.append
        start = n = self._consumed
        while len(events) < max_events:
            line = readline()
            if not line:
                self._at_end = True
                break
            n += 1
            try:
                append(decode(line))
            except InvalidEvent as e:
                if line.isspace():
                    continue
                rejected += 1
                self._dead_letter(line, n, e.reason)
        self._consumed = n
        return Batch(events, {self.key: n} if n != start else {}, rejected)

    def _dead_letter(self, line: bytes, number: int, reason: str) -> None:
        if self._dead is None:
            self._dead = open(self._dead_letter_path, "ab")  # noqa: SIM115 - closed in close()
        record: dict[str, str | int] = {"reason": reason, "source": self.key, "line": number}
        line = line.rstrip(b"\r\n")
        try:
            record["raw"] = line.decode()
        except UnicodeDecodeError:
            record["raw_b64"] = base64.b64encode(line).decode("ascii")
        self._dead.write(_encode(record) + b"\n")

    def flush(self) -> None:
        """Write the dead letters so far through to disk (flush and fsync)."""
        if self._dead is not None:
            self._dead.flush()
            os.fsync(self._dead.fileno())

    def commit(self, offsets: dict[str, int]) -> None:
        """Nothing to do: a file's position lives only in the trainer's checkpoint."""

    def lag(self) -> dict[str, int]:
        """``{key: 0}`` once the end of the file has been reached, else unknown (``{}``)."""
        return {self.key: 0} if self._at_end else {}

    def ready(self) -> bool:
        return True

    def identity(self) -> dict[str, str]:
        """``{"file:<path>": "sha1:<hash of the first line>"}``; stable while the log grows."""
        return {self.key: self._identity}

    def close(self) -> None:
        """Flush the dead letters and close both files."""
        if self._dead is not None:
            self.flush()
            self._dead.close()
            self._dead = None
        self._file.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
