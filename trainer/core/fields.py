"""Context fields as the command line names them: `device,hour,price:num` (no torch, no numpy,
so the CLI can read settings without loading the learner)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str = "cat"  # "cat" or "num"

    def __str__(self) -> str:
        return self.name if self.kind == "cat" else f"{self.name}:num"


def parse_fields(text: str) -> tuple[FieldSpec, ...]:
    """`a,b:num` → (FieldSpec('a', 'cat'), FieldSpec('b', 'num')); ValueError names the fix.

    >>> parse_fields("device, price:num")
    (FieldSpec(name='device', kind='cat'), FieldSpec(name='price', kind='num'))
    """
    specs: list[FieldSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, kind = part.partition(":")
        kind = kind or "cat"
        if kind not in ("cat", "num") or not name:
            raise ValueError(f"cannot read field {part!r}: write name or name:num (numeric)")
        if any(s.name == name for s in specs):
            raise ValueError(f"field {name!r} is listed twice")
        specs.append(FieldSpec(name, kind))
    return tuple(specs)
