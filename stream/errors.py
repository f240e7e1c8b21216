"""The exceptions of the stream package: one base, narrow subclasses."""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error raised by `stream`."""


class InvalidEvent(StreamError):
    """One event failed decoding or validation; it goes to the dead-letter sink.

    `reason` is short and human: ``"weight must be finite and >= 0, got nan"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceError(StreamError):
    """A source cannot go on: bad URI, missing file, offset out of range, re-created topic."""


class MappingError(SourceError):
    """A log cannot be read as asked: a field mapping naming an unknown column, a bad time unit,
    a format that needs an optional package. Found at start, before any record is read."""


class SinkError(StreamError):
    """A record could not be written (dead letters, the replay producer); never dropped silently."""


class Unreachable(SourceError):
    """No Kafka broker answered at `address` (down, a wrong host or port, a network between)."""

    what = "the Kafka broker"

    def __init__(self, address: str, reason: str, setting: str | None = None) -> None:
        self.address, self.reason, self.setting = address, reason, setting
        named = f"that {setting} names its address" if setting else "that the address is right"
        super().__init__(
            f"cannot reach {self.what} at {address} ({reason}); check that it runs and {named}"
        )
