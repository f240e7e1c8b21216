"""Negative-sampling strategies as the command line names them: `popularity:256,in-batch` (no
torch, so the CLI can read settings without loading the learner; the draws are negatives.py)."""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("popularity", "uniform", "in-batch", "hard", "full", "none")
_NO_COUNT = ("in-batch", "full", "none")
DEFAULT_NEGATIVES = "popularity:256,in-batch"  # chosen by bench: see README "Choosing negatives"


@dataclass(frozen=True)
class NegativeSpec:
    name: str
    count: int = 0  # in-batch: the batch; full: every item

    def __str__(self) -> str:
        return self.name if self.name in _NO_COUNT else f"{self.name}:{self.count}"


def parse_negatives(text: str) -> tuple[NegativeSpec, ...]:
    """Parse `name[:count],...`; raises ValueError naming the bad part and the choices.

    >>> parse_negatives("popularity:1024,in-batch")
    (NegativeSpec(name='popularity', count=1024), NegativeSpec(name='in-batch', count=0))
    """
    specs: list[NegativeSpec] = []
    for part in (p.strip() for p in text.split(",")):
        name, _, count = part.partition(":")
        if name not in STRATEGIES:
            raise ValueError(
                f"unknown negative strategy {name!r} in {text!r}; "
                f"choose from {', '.join(STRATEGIES)}"
            )
        if any(s.name == name for s in specs):
            raise ValueError(f"{name!r} appears twice in {text!r}; give each strategy once")
        if name in _NO_COUNT:
            if count:
                raise ValueError(f"{name!r} takes no count (got {part!r})")
            specs.append(NegativeSpec(name))
            continue
        if not count.isdigit() or int(count) <= 0:
            raise ValueError(f"{name!r} needs a positive count, e.g. {name}:64 (got {part!r})")
        specs.append(NegativeSpec(name, int(count)))
    if any(s.name == "none" for s in specs) and len(specs) > 1:
        raise ValueError(f"'none' cannot be combined with other strategies (got {text!r})")
    return tuple(specs)
