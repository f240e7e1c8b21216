"""One field's value, as a CSV cell (text) or a Parquet value, made into the event format's type.

Each function raises `InvalidEvent` with a reason naming the field; the event as a whole is
then validated by `stream.event.Decoder`, like any Kafka message.

>>> to_ms("1260759144", "s", "ts")
1260759144000
>>> to_ms("2009-12-14T02:52:24.5Z", "iso", "ts")
1260759144500
>>> context_value("7"), context_value("0.5"), context_value("007"), context_value("tv")
(7, 0.5, '007', 'tv')
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from stream.errors import InvalidEvent

TIME_UNITS = {"s": 1000, "ms": 1, "iso": 0}  # ms per unit; iso: ISO 8601 text
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FLOAT = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def identifier(value: Any, name: str) -> str | int:
    """A user, item or event id: a string or an integer (an integral float, as pandas writes
    an id column that had a null, becomes an integer)."""
    kind = value.__class__
    if kind is str or kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float and value.is_integer():
        return int(value)
    if value is None:
        raise InvalidEvent(f"{name} is null")
    if kind is bytes:
        try:
            return value.decode()  # type: ignore[no-any-return]
        except UnicodeDecodeError as e:
            raise InvalidEvent(f"{name} is not UTF-8: {e.reason} at byte {e.start}") from None
    raise InvalidEvent(f"{name} must be a string or an integer, got {kind.__name__} {value!r:.40}")


def to_ms(value: Any, unit: str, name: str) -> int:
    """Epoch milliseconds from a number of `unit` (``s``, ``ms``), an ISO 8601 text (``iso``,
    UTC when it names no zone) or a datetime (a Parquet timestamp, whatever the unit)."""
    if value.__class__ is str and unit != "iso":  # the common case first: a CSV cell
        try:
            return int(value) * TIME_UNITS[unit]
        except ValueError:
            pass
    if isinstance(value, datetime):
        return _datetime_ms(value)
    if isinstance(value, date):
        return _datetime_ms(datetime(value.year, value.month, value.day))
    if value is None or value == "":
        raise InvalidEvent(f"{name} is empty")
    if unit == "iso":
        if not isinstance(value, str):
            raise InvalidEvent(f"{name}: {value!r:.40} is not an ISO 8601 time (mapped as :iso)")
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(
                f"{name}: cannot read {value!r:.40} as an ISO 8601 time such as"
                " 2024-05-01T12:00:00Z"
            ) from None
        return _datetime_ms(t)
    per = TIME_UNITS[unit]
    if value.__class__ is int:
        return value * per  # type: ignore[no-any-return]
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InvalidEvent(
                f"{name}: cannot read {value!r:.40} as {_UNIT_NAMES[unit]}"
            ) from None
    if not isinstance(number, float) or not math.isfinite(number):
        raise InvalidEvent(f"{name}: {value!r:.40} is not a number of {_UNIT_NAMES[unit]}")
    return round(number * per)


def _datetime_ms(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MS


def weight(value: Any, name: str) -> float | None:
    """A weight; None for an empty cell or a null (the event's default weight, 1)."""
    kind = value.__class__
    if kind is str:
        if not value:
            return None
        try:
            w = float(value)
        except ValueError:
            raise InvalidEvent(f"{name}: cannot read {value!r:.40} as a number") from None
    elif kind is float or kind is int:
        w = float(value)
    elif value is None:
        return None
    else:
        raise InvalidEvent(f"{name} must be a number, got {kind.__name__} {value!r:.40}")
    if not math.isfinite(w):
        raise InvalidEvent(f"{name}: {value!r:.40} is not a finite number")
    return w


def context_value(value: Any) -> str | int | float | None:
    """A context value: text that reads as a number becomes one (``"7"`` → 7, but ``"007"``
    stays text); a bool becomes 0/1, a time its epoch ms; None, an empty cell, NaN and an
    infinite float: absent."""
    kind = value.__class__
    if kind is str:
        text: str = value
        if not text:
            return None
        if text.isascii() and (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
            n = int(text)
            return n if str(n) == text else text
        if _FLOAT.fullmatch(text):
            f = float(text)
            return f if math.isfinite(f) else text
        return text
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[no-any-return]
    if kind is bool:
        return int(value)
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return to_ms(value, "ms", "context")
    raise InvalidEvent(f"context values are strings or numbers, got {kind.__name__} {value!r:.40}")
