"""A field mapping: which column of a log holds which field of an event.

Written as one flag, ``user=userId,item=movieId,ts=timestamp:s,weight=rating`` (or as a TOML
table of the same pairs). ``ts`` takes a unit: ``:s``, ``:ms`` (the default, the event format's
own) or ``:iso`` (ISO 8601 text); a Parquet timestamp column is read as a time whatever the unit.
A field not named uses the column of its own name when there is one (so a CSV whose header is
``user,item,ts`` needs no mapping). Context columns go to the event's ``context`` under their
own name or a new one (``device,hour=hr``).

`FieldMap.bind` checks the mapping against a file's header once, at start (an unknown column is
a `MappingError`); the bound `RecordMapper` then turns each record into the event's JSON, which
`stream.event.Decoder` validates like any Kafka message.

>>> m = FieldMap.parse("user=userId,item=movieId,ts=timestamp:s,weight=rating")
>>> mapper = m.bind(("userId", "movieId", "rating", "timestamp"), source="ratings.csv")
>>> mapper.to_json(["1", "31", "2.5", "1260759144"])
b'{"user":"1","item":"31","ts":1260759144000,"weight":2.5}'
>>> FieldMap.parse("user=userId,ts=timestamp:sec")
Traceback (most recent call last):
...
stream.errors.MappingError: ts=timestamp:sec: unknown time unit 'sec'; use :s, :ms or :iso
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from stream.errors import InvalidEvent, MappingError
from stream.formats.values import TIME_UNITS, context_value, identifier, to_ms, weight

FIELDS = ("user", "item", "ts", "weight", "event_id")
REQUIRED = ("user", "item", "ts")
_UNITS = ":s, :ms or :iso"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


@dataclass(frozen=True)
class FieldMap:
    """Field → column pairs, the unit of ``ts``, and context key → column pairs."""

    fields: tuple[tuple[str, str], ...] = ()
    ts_unit: str = "ms"
    context: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> FieldMap:
        """``field=column`` pairs, comma-separated; `MappingError` names a bad one."""
        fields: dict[str, str] = {}
        unit = "ms"
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            field, sep, column = (s.strip() for s in part.partition("="))
            if not sep or not field or not column:
                raise MappingError(f"{part!r} is not FIELD=COLUMN (e.g. user=userId)")
            if field not in FIELDS:
                hint = " (other columns go to the context with --context-columns)"
                raise MappingError(
                    f"{part}: unknown field {field!r}; map {', '.join(FIELDS)}{hint}"
                )
            if field in fields:
                raise MappingError(f"{part}: {field} is mapped twice")
            name, colon, suffix = column.rpartition(":")
            if field == "ts" and colon:
                if suffix not in TIME_UNITS:
                    raise MappingError(f"{part}: unknown time unit {suffix!r}; use {_UNITS}")
                column, unit = name.strip(), suffix
            elif colon and suffix in TIME_UNITS:
                raise MappingError(f"{part}: only ts takes a time unit")
            fields[field] = column
        return cls(tuple(fields.items()), unit)

    @staticmethod
    def parse_context(text: str) -> tuple[tuple[str, str], ...]:
        """``column`` or ``key=column`` items, comma-separated.

        >>> FieldMap.parse_context("device, hour=hr")
        (('device', 'device'), ('hour', 'hr'))
        """
        pairs: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, column = (s.strip() for s in part.partition("="))
            column = column if sep else key
            if not key or not column:
                raise MappingError(f"{part!r} is not COLUMN or KEY=COLUMN")
            if key in pairs:
                raise MappingError(f"{part}: context key {key!r} is named twice")
            pairs[key] = column
        return tuple(pairs.items())

    @property
    def given(self) -> bool:
        """Whether anything is mapped (JSONL lines are events as they are unless it is)."""
        return bool(self.fields or self.context)

    def bind(
        self, columns: Sequence[str] | None, *, keyed: bool = False, source: str = "the log"
    ) -> RecordMapper:
        """The mapper for records of a file whose header is `columns` (None: no header, columns
        numbered from 1); `keyed`: records are JSON objects, read by key."""
        explicit = dict(self.fields)
        places: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for field in FIELDS:
            column = explicit.get(field)
            if column is None:
                if keyed or (columns is not None and field in columns):
                    column = field
                elif field in REQUIRED:
                    raise MappingError(_missing(field, columns, source))
                else:
                    continue
            places[field] = _locate(column, columns, keyed, source)
            labels[field] = field if column == field else f"{field} ({column})"
        context = [(k, _locate(c, columns, keyed, source), c) for k, c in self.context]
        unit = self.ts_unit if "ts" in explicit else "ms"
        return RecordMapper(places, labels, context, unit, keyed)


def _locate(column: str, columns: Sequence[str] | None, keyed: bool, source: str) -> Any:
    if keyed:
        return column
    if columns is None:
        if column.isascii() and column.isdigit() and int(column) >= 1:
            return int(column) - 1
        raise MappingError(
            f"{source} has no header (--no-header): name columns by number from 1,"
            f" e.g. user=1; got {column!r}"
        )
    if column in columns:
        return list(columns).index(column)
    near = [c for c in columns if c.lower() == column.lower()]
    near = near or difflib.get_close_matches(column, list(columns), n=2)
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
    raise MappingError(
        f"column {column!r} is not in the header of {source}{hint} (columns: {', '.join(columns)})"
    )


def _missing(field: str, columns: Sequence[str] | None, source: str) -> str:
    example = "COLUMN:s|ms|iso" if field == "ts" else "COLUMN"
    where = f"columns: {', '.join(columns)}" if columns is not None else "numbered from 1"
    return f"no column for {field} in {source}: map one with --map {field}={example} ({where})"


class RecordMapper:
    """A `FieldMap` bound to a file's columns: `to_json(record)` is the event's JSON, or
    `InvalidEvent` naming the field at fault."""

    def __init__(
        self,
        places: dict[str, Any],
        labels: dict[str, str],
        context: list[tuple[str, Any, str]],
        unit: str,
        keyed: bool,
    ) -> None:
        self._user, self._item, self._ts = places["user"], places["item"], places["ts"]
        self._weight, self._event_id = places.get("weight"), places.get("event_id")
        self._labels = labels
        self._context = [(key, place) for key, place, _ in context]
        self._unit = unit
        self._keyed = keyed
        self._required = {places[f]: labels[f] for f in REQUIRED} if keyed else {}
        positions = [p for p in (*places.values(), *(p for _, p in self._context))]
        self.columns = set(positions) if not keyed else set()
        self._width = 0 if keyed else max(positions) + 1

    def to_json(self, record: Any) -> bytes:
        if self._keyed:
            record = self._object(record)
            get = record.get
        else:
            if len(record) < self._width:
                raise InvalidEvent(
                    f"the row has {len(record)} fields; the mapping reads field {self._width}"
                )
            get = record.__getitem__
        labels = self._labels
        event: dict[str, Any] = {
            "user": identifier(get(self._user), labels["user"]),
            "item": identifier(get(self._item), labels["item"]),
            "ts": to_ms(get(self._ts), self._unit, labels["ts"]),
        }
        if self._weight is not None:
            w = weight(get(self._weight), labels["weight"])
            if w is not None:
                event["weight"] = w
        if self._event_id is not None:
            eid = get(self._event_id)
            if eid is not None and eid != "":
                event["event_id"] = str(identifier(eid, labels["event_id"]))
        context: dict[str, Any] = {}
        if self._keyed and record.get("context") is not None:
            if not isinstance(record["context"], dict):
                raise InvalidEvent("context must be an object")
            context.update(record["context"])
        for key, place in self._context:
            value = context_value(get(place))
            if value is not None:
                context[key] = value
        if context:
            event["context"] = context
        try:
            return _encode(event)
        except UnicodeEncodeError as e:
            raise InvalidEvent(f"not UTF-8: {e.reason} in {e.object[:20]!r}") from None

    def _object(self, line: Any) -> dict[str, Any]:
        try:
            record = _decode(line)
        except msgspec.DecodeError as e:
            raise InvalidEvent(f"not JSON: {e}") from None
        if not isinstance(record, dict):
            raise InvalidEvent(f"not a JSON object: {type(record).__name__}")
        for place, label in self._required.items():
            if record.get(place) is None:
                raise InvalidEvent(f"missing {label}")
        return record
