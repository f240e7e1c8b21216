"""The dead-letter file of file sources and of replay: one JSON object per rejected record.

Each letter holds the reason, the source (``file:<path>``), the record's position (``line``
for JSONL; ``row``, and ``line`` for CSV/TSV, for tables) and its content: ``raw`` (text),
``raw_b64`` when the bytes are not UTF-8, or ``record`` (a Parquet row's mapped columns).
The file is opened on the first letter and appended to across runs.
"""

from __future__ import annotations

import base64
import os
from typing import IO, Any

import msgspec

_encode = msgspec.json.Encoder().encode


class DeadLetterFile:
    def __init__(self, path: str | os.PathLike[str], source: str) -> None:
        self.path = os.fspath(path)
        self.source = source
        self.written = 0
        self._file: IO[bytes] | None = None

    def write(self, reason: str, fields: dict[str, Any]) -> None:
        """Append one letter: `reason` and `fields` (a ``raw`` value may be bytes)."""
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        letter: dict[str, Any] = {"reason": reason, "source": self.source}
        for key, value in fields.items():
            if key == "raw" and isinstance(value, bytes):
                try:
                    letter["raw"] = value.decode()
                except UnicodeDecodeError:
                    letter["raw_b64"] = base64.b64encode(value).decode("ascii")
            else:
                letter[key] = value
        self._file.write(_encode(letter) + b"\n")
        self.written += 1

    def flush(self) -> None:
        """Write the letters so far through to disk (flush and fsync)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None
