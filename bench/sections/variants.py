"""The softmax configurations the benchmarks compare, checked against the learner at run time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench import capabilities
from trainer.core.negatives import DEFAULT_NEGATIVES, parse_negatives
from trainer.core.settings import ModelSettings


@dataclass(frozen=True)
class Variant:
    name: str
    negatives: str = DEFAULT_NEGATIVES
    changes: dict[str, Any] = field(default_factory=dict)
    logq: bool = True

    def problem(self) -> str | None:
        """None if the learner can train this variant now, else why not."""
        why = capabilities.negatives(self.negatives)
        if why:
            return why
        for key, value in self.changes.items():
            why = capabilities.probe(**{key: value})
            if why:
                return why
        if not self.logq:
            return capabilities.without_logq()[1]
        return None

    def settings(self, seed: int, **extra: Any) -> ModelSettings:
        changes: dict[str, Any] = {"negatives": parse_negatives(self.negatives), "seed": seed}
        changes.update(self.changes)
        if not self.logq:
            changes.update(capabilities.without_logq()[0])
        fields = {f.name for f in dataclasses.fields(ModelSettings)}
        if "eval_sample" in fields:
            changes["eval_sample"] = 0  # the harness evaluates; the learner need not
        changes.update(extra)
        return dataclasses.replace(ModelSettings(), **changes)


def default() -> Variant:
    return Variant(f"softmax default ({DEFAULT_NEGATIVES})")


def strategies() -> list[Variant]:
    """Issue 3's quality grid: in-batch / popularity / popularity+hard, with and without logQ."""
    out = []
    for neg in ("in-batch", "popularity:1024", "popularity:1024,hard:64"):
        out.append(Variant(f"softmax {neg}", neg))
        out.append(Variant(f"softmax {neg} no-logQ", neg, logq=False))
    return out


def extras() -> list[Variant]:
    """Gravity on top of the defaults, and the popularity prior flipped from its default."""
    out = [Variant("softmax default + gravity 0.1", changes={"gravity": 0.1})]
    prior = getattr(ModelSettings(), "popularity_prior", 0.0)
    if prior:
        out.append(
            Variant("softmax default without popularity prior", changes={"popularity_prior": 0.0})
        )
    else:
        out.append(
            Variant("softmax default + popularity prior 1", changes={"popularity_prior": 1.0})
        )
    return out
