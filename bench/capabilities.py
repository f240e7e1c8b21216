"""What the learner can do today, found out at run time, never assumed.

Several benchmark arms need learner features that land in steps (hard negatives, gravity, the
popularity prior, a switch for the logQ correction, context features). Each probe returns None
when the feature works, else a reason that the report prints instead of a number. "Works"
means: the setting is accepted, a step runs, and the setting changes what the model learns.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

import numpy as np
import torch

from trainer.core.learner import EventColumns, Learner
from trainer.core.negatives import parse_negatives
from trainer.core.settings import ModelSettings

LOGQ_FLAGS = ("logq", "log_q", "logq_correction", "correct_logq")  # a bool; True = corrected
CONTEXT_FIELDS = ("context_fields", "context")  # ModelSettings: which context keys ψ reads


def _tiny_batches() -> list[EventColumns]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        users = rng.integers(0, 20, 64)
        items = rng.integers(0, 50, 64)
        out.append(
            EventColumns(
                users=[str(u) for u in users],
                items=[f"i{i}" for i in items],
                ts=np.full(64, 1_700_000_000_000 + k * 1000, np.int64),
                weights=np.ones(64, np.float32),
            )
        )
    return out


def _train_scores(settings: ModelSettings) -> torch.Tensor:
    learner = Learner(settings)
    for cols in _tiny_batches():
        learner.learn(cols)
    return learner.scoring.scores(np.sort(learner.users.admitted_rows()))


def _off(value: Any) -> Any:
    """The other side of a setting: a switch flipped; a weight 0 (or 1 when it is 0)."""
    if isinstance(value, bool):
        return not value
    return type(value)(1 if value == 0 else 0)


@cache
def probe(**changes: Any) -> str | None:
    """None if `changes` train differently from the same settings with them on their other
    side (see `_off`; negatives against plain popularity), else why not."""
    base = ModelSettings(dim=8, history=4, seed=3, negatives=parse_negatives("popularity:32"))
    fields = {f.name for f in dataclasses.fields(ModelSettings)}
    missing = [k for k in changes if k not in fields]
    if missing:
        return f"ModelSettings has no field {', '.join(missing)} yet"
    off: dict[str, Any] = {
        k: base.negatives if k == "negatives" else _off(v) for k, v in changes.items()
    }
    try:
        changed = _train_scores(dataclasses.replace(base, **changes))
        plain = _train_scores(dataclasses.replace(base, **off))
    except Exception as e:  # any failure means: not usable yet; say what it was
        return f"the learner rejects {changes}: {type(e).__name__}: {e}"
    if torch.equal(changed, plain):
        return f"the learner accepts {changes} but it changes nothing yet"
    return None


def negatives(spec: str) -> str | None:
    """None if the negatives spelling `spec` parses and trains."""
    try:
        parsed = parse_negatives(spec)
    except ValueError as e:
        return f"--negatives {spec}: {e}"
    if spec == "popularity:32":
        return None
    return probe(negatives=parsed)


def logq_flag() -> str | None:
    """The name of the learner's switch for the logQ correction, or None if it has none."""
    fields = {f.name for f in dataclasses.fields(ModelSettings)}
    return next((f for f in LOGQ_FLAGS if f in fields), None)


def without_logq() -> tuple[dict[str, Any], str | None]:
    """(settings changes that turn logQ off, None) or ({}, why that is not possible yet)."""
    flag = logq_flag()
    if flag is None:
        return {}, (
            "no setting turns the logQ correction off (asked the lead for "
            "ModelSettings.logq: bool = True)"
        )
    return {flag: False}, probe(**{flag: False})


def context_features() -> str | None:
    """None once the learner reads context fields (issue 4), else what is missing."""
    fields = {f.name for f in dataclasses.fields(ModelSettings)}
    have = [f for f in CONTEXT_FIELDS if f in fields]
    ev = {f.name for f in dataclasses.fields(EventColumns)}
    if not have or "contexts" not in ev:
        return (
            "query features arrive with issue 4 (ModelSettings.context_fields and "
            "EventColumns.context); the stream and the 'with feature' arm are wired"
        )
    return None
