"""Negative-sampling strategies and their CLI spelling.

`--negatives popularity:1024,in-batch` means 1024 popularity draws plus the batch's positives.
Every drawn negative comes with q, the probability under the strategy that drew it; the loss
turns that into log(N·q) with N the total number of negatives (loss.py explains why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.popularity import DecayedCounts, PopularitySampler

STRATEGIES = ("popularity", "uniform", "in-batch", "none")
DEFAULT_NEGATIVES = "popularity:1024,in-batch"


@dataclass(frozen=True)
class NegativeSpec:
    name: str
    count: int = 0  # in-batch: 0 = every other positive of the batch

    def __str__(self) -> str:
        return self.name if self.name in ("in-batch", "none") else f"{self.name}:{self.count}"


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
        if name in ("in-batch", "none"):
            if count:
                raise ValueError(f"{name!r} takes no count (got {part!r})")
            specs.append(NegativeSpec(name))
            continue
        if not count.isdigit() or int(count) <= 0:
            raise ValueError(f"{name!r} needs a positive count, e.g. {name}:1024 (got {part!r})")
        specs.append(NegativeSpec(name, int(count)))
    if any(s.name == "none" for s in specs) and len(specs) > 1:
        raise ValueError(f"'none' cannot be combined with other strategies (got {text!r})")
    return tuple(specs)


@dataclass
class SharedNegatives:
    """Negatives shared by every query of a batch: rows (N,) and log(N_total·q) (N,)."""

    rows: np.ndarray
    log_q: np.ndarray

    @property
    def count(self) -> int:
        return len(self.rows)


def draw_shared(
    specs: tuple[NegativeSpec, ...],
    positives: np.ndarray,
    sampler: PopularitySampler,
    positive_counts: DecayedCounts,
    n_items: int,
    rng: np.random.Generator,
) -> SharedNegatives:
    """Draw the batch's shared negatives; `positive_counts` must already hold this batch."""
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    for spec in specs:
        if spec.name == "popularity":
            blocks.append(sampler.sample(spec.count))
        elif spec.name == "uniform":
            rows = rng.integers(0, n_items, size=spec.count)
            blocks.append((rows, np.full(spec.count, 1.0 / n_items)))
        elif spec.name == "in-batch":
            # an item shows up as an in-batch negative by its share of positives, not count^α;
            # each occurrence is one draw, so an item twice in the batch counts twice
            blocks.append((positives, positive_counts.share(positives)))
    if not blocks:
        return SharedNegatives(np.empty(0, np.int64), np.empty(0))
    rows = np.concatenate([b[0] for b in blocks])
    q = np.concatenate([b[1] for b in blocks])
    return SharedNegatives(rows, np.log(len(rows) * np.maximum(q, 1e-30)))
