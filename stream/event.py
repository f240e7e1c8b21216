"""The event format, and the one place where raw bytes become a validated `Interaction`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from stream.errors import InvalidEvent

MAX_MESSAGE_BYTES = 64 * 1024
MAX_ID_BYTES = 256
DAY_MS = 86_400_000


class Interaction(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One user-item interaction. Ids are strings everywhere downstream."""

    user: str
    item: str
    ts: int  # epoch milliseconds
    weight: float = 1.0
    event_id: str | None = None
    context: dict[str, str | int | float] = {}


class _Wire(msgspec.Struct, gc=False):
    """What producers may send: ids as strings or integers, `ts` optional."""

    user: str | int
    item: str | int
    ts: int | None = None
    weight: float = 1.0
    event_id: str | None = None
    context: dict[str, str | int | float] = {}


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, from the system clock."""
    return time.time_ns() // 1_000_000


class Decoder:
    """Decodes and validates one JSON event; raises `InvalidEvent` with a precise reason.

    `record_ts` (a Kafka record timestamp, -1 meaning none) stands in for a missing `ts`.
    Events more than `max_future_ms` ahead of `clock()` are rejected. The clock is read
    only when a `ts` passes the last horizon seen, so it must never go backwards.

    >>> d = Decoder(clock=lambda: 10_000)
    >>> d.decode(b'{"user": 7, "item": "i3", "ts": 9000, "extra": true}')
    Interaction(user='7', item='i3', ts=9000, weight=1.0, event_id=None, context={})
    >>> d.decode(b'{"user": 7, "item": "i3"}', record_ts=5000).ts
    5000
    >>> d.decode(b'{"user": 7, "item": "i3", "ts": 1, "weight": -2}')
    Traceback (most recent call last):
    ...
    stream.errors.InvalidEvent: weight must be finite and >= 0, got -2.0
    """

    def __init__(self, max_future_ms: int = DAY_MS, clock: Callable[[], int] = wall_clock_ms):
        if max_future_ms < 0:
            raise ValueError(f"max_future_ms must be >= 0, got {max_future_ms}")
        self._decode = msgspec.json.Decoder(_Wire).decode
        self._max_future_ms = max_future_ms
        self._clock = clock
        self._horizon = -1

    def decode(self, raw: bytes, record_ts: int | None = None) -> Interaction:
        """Return the event in `raw`, or raise `InvalidEvent`."""
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidEvent(
                f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
            )
        try:
            if not raw.isascii():
                raw.decode()  # msgspec skips ignored fields without checking their UTF-8
            wire = self._decode(raw)
        except UnicodeDecodeError as e:
            raise InvalidEvent(f"not UTF-8: {e.reason} at byte {e.start}") from e
        except msgspec.ValidationError as e:
            raise InvalidEvent(f"invalid event: {e}") from e
        except msgspec.DecodeError as e:
            raise InvalidEvent(f"not JSON: {e}") from e

        user = wire.user
        if user.__class__ is not str:
            user = str(user)
        if not user or (len(user) > MAX_ID_BYTES // 4 and len(user.encode()) > MAX_ID_BYTES):
            _bad_id("user", user)
        item = wire.item
        if item.__class__ is not str:
            item = str(item)
        if not item or (len(item) > MAX_ID_BYTES // 4 and len(item.encode()) > MAX_ID_BYTES):
            _bad_id("item", item)

        ts = wire.ts
        if ts is None:
            if record_ts is None or record_ts < 0:
                raise InvalidEvent(
                    "missing ts: the event has no `ts` and there is no record timestamp;"
                    " add `ts` in epoch milliseconds"
                )
            ts = record_ts
        elif ts < 0:
            raise InvalidEvent(f"ts must be epoch milliseconds >= 0, got {ts}")
        if ts > self._horizon:
            self._horizon = self._clock() + self._max_future_ms
            if ts > self._horizon:
                ahead = ts - (self._horizon - self._max_future_ms)
                raise InvalidEvent(
                    f"far-future timestamp: ts {ts} is {ahead} ms ahead of now"
                    f" (limit {self._max_future_ms} ms); is it in seconds or microseconds?"
                )

        weight = wire.weight
        if not 0.0 <= weight < math.inf:
            raise InvalidEvent(f"weight must be finite and >= 0, got {weight}")
        return Interaction(user, item, ts, weight, wire.event_id, wire.context)


def _bad_id(name: str, value: str) -> None:
    if not value:
        raise InvalidEvent(f"{name} must be a non-empty string or integer, got ''")
    raise InvalidEvent(
        f"{name} is {len(value.encode())} UTF-8 bytes, over the {MAX_ID_BYTES}-byte limit"
        f" (starts {value[:20]!r})"
    )


_encode = msgspec.json.Encoder().encode


def encode(event: Interaction | Mapping[str, Any]) -> bytes:
    """Compact JSON for producers and generators; `Decoder.decode` reads it back.

    >>> encode(Interaction("u1", "i2", ts=5))
    b'{"user":"u1","item":"i2","ts":5}'
    """
    if isinstance(event, Interaction):
        return _encode(event)
    return _encode(dict(event))
