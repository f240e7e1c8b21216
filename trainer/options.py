"""Options, each declared once: flag, default, parser, check and help in one `Option`.

The command line, the ``RECSTREAM_*`` variables, the TOML file, the settings objects' fields
and ``--help`` all come from these declarations: `trainer.cli.options` turns them into
argparse arguments and builds a settings object from the parsed arguments, field by field.
A settings field declares its option with `Option.field()`:

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Example:
    ...     batch_size: int = Option("--batch-size", 1024, "events per step", positive).field()
    ...     half_life_ms: float = Option("--half-life", "7d", "decay", duration_ms).field()
    >>> Example()
    Example(batch_size=1024, half_life_ms=604800000.0)

A default is written as on the command line: a text default goes through `parse` as a flag's
text would (``"7d"`` → 604800000.0 ms), so the flag and the field share one default. A bool
default makes a switch; a switch whose default is True is spelled ``--no-NAME``.

A parser takes ``(text, flag)`` and raises ValueError with a message that names the flag and
the fix; `trainer.cli.resolve` prefixes where the text came from (``RECSTREAM_BATCH_SIZE: ...``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Parse = Callable[[str, str], Any]  # (text, flag) -> value; ValueError naming the flag
Check = tuple[Callable[[Any], bool], str]  # (is the setting's value good?, what to use instead)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of the command line and, through `field()`, of a settings object."""

    flag: str
    default: Any  # as written on the command line; None: unset
    help: str
    parse: Parse | None = None  # None: the text as it is
    check: Check | None = None  # also checked when the settings object is made in code
    convert: Callable[[Any], Any] | None = None  # the setting's value from the flag's
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    group: str | None = None  # a section of --help
    required: bool = False  # from the flag, the environment or the file; no default
    hidden: bool = False  # left out of --help (test hooks, the writer child's --parent-pid)
    many: bool = False  # repeatable; a list of parsed values
    short: str | None = None  # e.g. "-o" beside "--output"

    @property
    def dest(self) -> str:
        """The name in parsed arguments, ``RECSTREAM_`` + its capitals, and the TOML key."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def switch(self) -> bool:
        return isinstance(self.default, bool)

    def read(self, text: str) -> Any:
        """The flag's value for `text` (parsed, checked); ValueError names the flag."""
        value = text if self.parse is None else self.parse(text, self.flag)
        problem = self.problem(self.setting(value))
        if problem:
            raise ValueError(problem)
        return value

    def setting(self, value: Any) -> Any:
        """The settings field's value for the flag's (a switch: given or not)."""
        if self.switch:
            return bool(value) != self.default
        return value if self.convert is None or value is None else self.convert(value)

    def problem(self, value: Any) -> str | None:
        """Why `value` is no good for this setting, or None."""
        if self.check is None or self.check[0](value):
            return None
        return f"{self.flag}: bad value {value!r}; use {self.check[1]}"

    def initial(self) -> Any:
        """The settings field's default."""
        if self.switch:
            return self.default
        if isinstance(self.default, str):
            return self.setting(self.read(self.default))
        return self.setting(self.default)

    def field(self, **kwargs: Any) -> Any:
        """A dataclass field for this option (no default if the option is required)."""
        metadata = {"option": self}
        if self.required:
            return dataclasses.field(metadata=metadata, **kwargs)
        return dataclasses.field(default=self.initial(), metadata=metadata, **kwargs)


def options_of(settings: Any) -> Iterator[tuple[str, Option]]:
    """(field name, option) of each field of a settings class or object that has one."""
    for f in dataclasses.fields(settings):
        if "option" in f.metadata:
            yield f.name, f.metadata["option"]


# ---- parsers: (text, flag) -> value -----------------------------------------------------------


def _as(kind: Callable[[str], Any], what: str, text: str, flag: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{flag} takes {what}, got {text!r}") from None


def whole(text: str, flag: str) -> int:
    return int(_as(int, "a whole number", text, flag))


def positive(text: str, flag: str) -> int:
    v = whole(text, flag)
    if v <= 0:
        raise ValueError(f"{flag} must be > 0, got {v}")
    return v


def number(text: str, flag: str) -> float:
    return float(_as(float, "a number", text, flag))


def seconds(text: str, flag: str) -> float:
    """Seconds > 0."""
    v = float(_as(float, "seconds", text, flag))
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{flag} must be > 0 seconds, got {text!r}")
    return v


def seconds_or_zero(text: str, flag: str) -> float:
    v = float(_as(float, "seconds", text, flag))
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{flag} must be >= 0 seconds, got {text!r}")
    return v


def port(text: str, flag: str) -> int:
    v = int(_as(int, "a port number", text, flag))
    if not 0 <= v <= 65535:
        raise ValueError(f"{flag} must be 0..65535, got {v}")
    return v


def path(text: str, flag: str) -> Path:
    return Path(text)


def cap(text: str, flag: str) -> int | None:
    """A row cap; 0 = none (None)."""
    return whole(text, flag) or None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def duration_ms(text: str, flag: str) -> float:
    """'7d', '12h', '30m', '90s', '250ms' or a bare number of seconds → milliseconds.

    >>> duration_ms("7d", "--half-life")
    604800000.0
    """
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{flag}: cannot read {text!r} as a duration; write e.g. 7d, 12h, 90s")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def duration_or_never(text: str, flag: str) -> float | None:
    """A duration; 0 = never (None)."""
    return duration_ms(text, flag) or None


def iso_ms(text: str, flag: str) -> int:
    """An ISO 8601 time (UTC if it names no zone) → milliseconds since the epoch."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{flag} takes an ISO 8601 time such as 2026-11-01T00:00:00Z, got {text!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def key_value(text: str, flag: str) -> tuple[str, object]:
    """``NAME=VALUE``; the value as an int, float or bool when it reads as one."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{flag} takes NAME=VALUE, got {text!r}")
    value: object = raw
    for kind in (int, float):
        try:
            value = kind(raw)
            break
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key.strip(), value


def sizes(text: str, flag: str) -> str:
    """Comma-separated sizes such as ``256,128`` (kept as text; `as_sizes` reads them)."""
    try:
        as_sizes(text)
    except ValueError:
        raise ValueError(f"{flag}: cannot read {text!r}; write sizes like 256,128") from None
    return text


def as_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())
