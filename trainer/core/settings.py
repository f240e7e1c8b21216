"""Settings as frozen typed objects; the CLI builds them, library classes take them whole."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.core.features import FieldSpec
from trainer.core.negatives import DEFAULT_NEGATIVES, NegativeSpec, parse_negatives
from trainer.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(text: str, setting: str) -> float:
    """'7d', '12h', '30m', '90s', '250ms' or a bare number of seconds → milliseconds.

    >>> parse_duration_ms("7d", "--half-life")
    604800000.0
    """
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"{setting}: cannot read {text!r} as a duration; write e.g. 7d, 12h, 90s")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(frozen=True)
class ModelSettings:
    """What the learner needs: model shape, optimiser, negatives, popularity."""

    dim: int = 64
    layers: tuple[int, ...] = ()  # hidden layer sizes of the query tower; () = linear
    history: int = 20  # recent items per user fed to the query tower
    lr: float = 0.1  # Adagrad step for embedding rows
    dense_lr: float = 0.01  # Adagrad step for the tower's dense weights
    negatives: tuple[NegativeSpec, ...] = field(
        default_factory=lambda: parse_negatives(DEFAULT_NEGATIVES)
    )
    alpha: float = 0.75  # popularity sampler: q ∝ count^alpha ...
    epsilon: float = 0.05  # ... mixed with this share of uniform draws
    half_life_ms: float = 7 * 86_400_000  # popularity decay in event time; 0 = none
    hard_pool: int = 256  # hard negatives: candidates drawn by popularity, then by score
    hard_temperature: float = 1.0  # hard negatives: sampled ∝ exp(score / temperature)
    gravity: float = 0.0  # λ of the gravity penalty (mean squared score over all pairs)
    popularity_prior: float = 1.0  # w: logit offset w·log(1 + decayed count), train and serve
    logq: bool = True  # subtract log Q from sampled logits (off only to show the bias)
    eval_sample: int = 64  # at most this many queries per batch scored before learning ...
    eval_budget: float = 0.1  # ... and fewer when scoring would exceed this share of a step
    # vocabulary: admission, caps and eviction (rows per table stay bounded)
    min_count: int = 2  # sightings before an id gets its own row; until then a shared bucket
    buckets: int = 16  # shared rows per id table for ids not admitted yet
    max_users: int | None = 2_000_000
    max_items: int | None = 1_000_000
    evict_after_ms: float | None = 30 * 86_400_000  # ids unseen this long (event time) leave
    # features from the event's context
    context_fields: tuple[FieldSpec, ...] = ()
    item_features: tuple[FieldSpec, ...] = ()
    feature_buckets: int = 1000  # hashed rows per categorical feature
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.dim > 0, "--dim", self.dim, "a positive integer such as 64"),
            (
                all(x > 0 for x in self.layers),
                "--layers",
                self.layers,
                "positive sizes, e.g. 128,64",
            ),
            (self.history >= 0, "--history", self.history, "0 or more"),
            (self.lr > 0, "--lr", self.lr, "a positive number such as 0.1"),
            (self.dense_lr > 0, "--dense-lr", self.dense_lr, "a positive number such as 0.01"),
            (self.alpha >= 0, "--alpha", self.alpha, "a number >= 0 (0.75 is usual)"),
            (0 <= self.epsilon <= 1, "--epsilon", self.epsilon, "a share in [0, 1]"),
            (
                self.half_life_ms >= 0,
                "--half-life",
                self.half_life_ms,
                "a duration such as 7d, or 0",
            ),
            (self.hard_pool > 0, "--hard-pool", self.hard_pool, "a positive count such as 256"),
            (
                self.hard_temperature > 0,
                "--hard-temperature",
                self.hard_temperature,
                "a number > 0",
            ),
            (self.gravity >= 0, "--gravity", self.gravity, "a number >= 0 such as 0.01 (0 = off)"),
            (self.popularity_prior >= 0, "--popularity-prior", self.popularity_prior, "w >= 0"),
            (self.eval_sample >= 0, "--eval-sample", self.eval_sample, "a count >= 0 (0 = off)"),
            (self.eval_budget > 0, "--eval-budget", self.eval_budget, "a share > 0 such as 0.1"),
            (self.min_count >= 1, "--min-count", self.min_count, "1 or more"),
            (
                self.buckets >= (1 if self.min_count > 1 else 0),
                "--buckets",
                self.buckets,
                "at least 1 shared row when --min-count > 1",
            ),
            (
                self.max_users is None or self.max_users > self.buckets,
                "--max-users",
                self.max_users,
                "a cap above --buckets",
            ),
            (
                self.max_items is None or self.max_items > self.buckets,
                "--max-items",
                self.max_items,
                "a cap above --buckets",
            ),
            (
                self.evict_after_ms is None or self.evict_after_ms > 0,
                "--evict-after",
                self.evict_after_ms,
                "a duration such as 30d, or 0 for never",
            ),
            (self.feature_buckets > 0, "--feature-buckets", self.feature_buckets, "a count > 0"),
            (
                all(f.kind == "cat" for f in self.item_features),
                "--item-features",
                self.item_features,
                "categorical fields only (no :num)",
            ),
        ]
        for ok, name, value, fix in checks:
            if not ok:
                raise ConfigError(f"{name}: bad value {value!r}; use {fix}")

    # settings that fix the shape of the state: a checkpoint cannot be resumed with others
    SHAPE = (
        "dim",
        "layers",
        "history",
        "buckets",
        "context_fields",
        "item_features",
        "feature_buckets",
    )

    def shape_mismatch(self, saved: dict[str, Any]) -> str | None:
        """Why a checkpoint trained with `saved` settings cannot resume under these, or None."""
        mine = json.loads(json.dumps(asdict(self), default=str))
        for key in self.SHAPE:
            if key in saved and mine[key] != saved[key]:
                flag = "--" + key.replace("_", "-")
                return f"{flag} is {mine[key]!r} but the checkpoint was trained with {saved[key]!r}"
        return None
