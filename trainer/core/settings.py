"""The learner's settings: one frozen object whose fields declare their options.

Each field's `Option` (`trainer.options`) holds its flag, default, parser, check and help; the
CLI builds its parser and this object from them, and code that makes one directly gets the same
defaults and checks (a bad value raises ConfigError naming the flag and the fix).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from trainer.core.fields import FieldSpec, parse_fields
from trainer.core.strategies import DEFAULT_NEGATIVES, STRATEGIES, NegativeSpec, parse_negatives
from trainer.errors import ConfigError
from trainer.options import (
    Option,
    Parse,
    as_sizes,
    cap,
    duration_ms,
    duration_or_never,
    number,
    options_of,
    sizes,
    whole,
)


def _model(flag: str, default: Any, help: str, parse: Parse | None = None, **kw: Any) -> Any:
    return Option(flag, default, help, parse, group="model", **kw).field()


def _vocabulary(flag: str, default: Any, help: str, parse: Parse | None = None, **kw: Any) -> Any:
    return Option(flag, default, help, parse, group="vocabulary and features", **kw).field()


def _negatives(text: str, flag: str) -> tuple[NegativeSpec, ...]:
    try:
        return parse_negatives(text)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


def _durations(text: str, flag: str) -> tuple[float, ...]:
    return tuple(duration_ms(part, flag) for part in text.split(",") if part.strip())


def _fields(text: str, flag: str) -> tuple[FieldSpec, ...]:
    try:
        return parse_fields(text)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


@dataclass(frozen=True)
class ModelSettings:
    """What the learner needs: model shape, optimiser, negatives, popularity, vocabulary."""

    dim: int = _model(
        "--dim",
        64,
        "size of every vector",
        whole,
        check=(lambda v: v > 0, "a positive integer such as 64"),
    )
    layers: tuple[int, ...] = _model(
        "--layers",
        "",
        "hidden sizes of the query tower, e.g. 256,128 (none: a linear tower)",
        sizes,
        convert=as_sizes,
        check=(lambda v: all(x > 0 for x in v), "positive sizes, e.g. 128,64"),
    )
    history: int = _model(
        "--history",
        20,
        "recent items per user in the query",
        whole,
        check=(lambda v: v >= 0, "0 or more"),
    )
    lr: float = _model(
        "--lr",
        0.1,
        "Adagrad step of embedding rows",
        number,
        check=(lambda v: v > 0, "a positive number such as 0.1"),
    )
    dense_lr: float = _model(
        "--dense-lr",
        0.01,
        "Adagrad step of the tower's dense weights",
        number,
        check=(lambda v: v > 0, "a positive number such as 0.01"),
    )
    negatives: tuple[NegativeSpec, ...] = _model(
        "--negatives",
        DEFAULT_NEGATIVES,
        f"strategies as name[:count],...; names: {', '.join(STRATEGIES)}",
        _negatives,
    )
    alpha: float = _model(
        "--alpha",
        0.75,
        "popularity sampling ∝ count^alpha",
        number,
        check=(lambda v: v >= 0, "a number >= 0 (0.75 is usual)"),
    )
    epsilon: float = _model(
        "--epsilon",
        0.05,
        "uniform share of popularity draws",
        number,
        check=(lambda v: 0 <= v <= 1, "a share in [0, 1]"),
    )
    half_life_ms: float = _model(
        "--half-life",
        "7d",
        "popularity decay in event time; 0 = none",
        duration_ms,
        check=(lambda v: v >= 0, "a duration such as 7d, or 0"),
    )
    hard_pool: int = _model(
        "--hard-pool",
        256,
        "hard negatives: candidates drawn by popularity before scoring",
        whole,
        check=(lambda v: v > 0, "a positive count such as 256"),
    )
    hard_temperature: float = _model(
        "--hard-temperature",
        1.0,
        "hard negatives are drawn ∝ exp(score / temperature)",
        number,
        check=(lambda v: v > 0, "a number > 0"),
    )
    gravity: float = _model(
        "--gravity",
        0.0,
        "λ of the gravity penalty on the mean squared score (0 = off)",
        number,
        check=(lambda v: v >= 0, "a number >= 0 such as 0.01 (0 = off)"),
    )
    popularity_prior: float = _model(
        "--popularity-prior",
        2.0,
        "weight w of a logit offset w·log(1 + decayed count), in training and serving, so the "
        "model falls back on what is trending where personal signal is weak (0 = off)",
        number,
        check=(lambda v: v >= 0, "w >= 0"),
    )
    prior_half_lives: tuple[float, ...] = _model(
        "--prior-half-life",
        "7d",
        "decay in event time of the counts behind the prior; several, e.g. 1d,30d, give the "
        "prior one learned weight each (short ones follow what trends now)",
        _durations,
        check=(lambda v: len(v) > 0 and all(x > 0 for x in v), "durations such as 1d,30d"),
    )
    learn_prior: bool = _model(
        "--learn-prior",
        False,
        "learn the prior's weights (starting from --popularity-prior) with the model",
    )
    user_dropout: float = _model(
        "--user-dropout",
        0.0,
        "share of training queries that leave out the user's own embedding, so ψ from history "
        "and context alone learns to serve users the model has no vector for",
        number,
        check=(lambda v: 0 <= v < 1, "a share in [0, 1)"),
    )
    history_decay: float = _model(
        "--history-decay",
        1.0,
        "weight of a history item per step back in time: 1 = a plain mean of the last "
        "--history items; 0.8 = the newest counts most",
        number,
        check=(lambda v: 0 < v <= 1, "a number in (0, 1]"),
    )
    activity_features: bool = _model(
        "--no-activity-features",
        True,
        "leave out the query's activity features (hours since the user's previous event, its "
        "event count): they tell a user in a session from one coming back after weeks",
    )
    mask_own: str = _model(
        "--mask-own",
        "none",
        "leave a user's own items out of its negatives: batch = its other positives in the "
        "batch (in-batch columns drawn with it, not independently), history = also its "
        "recent items among every strategy's negatives",
        choices=("none", "batch", "history"),
    )
    logq: bool = _model(
        "--no-logq", True, "do not subtract log Q from sampled logits (biased; for comparisons)"
    )
    eval_sample: int = _model(
        "--eval-sample",
        64,
        "queries per batch scored before learning, for progressive recall",
        whole,
        check=(lambda v: v >= 0, "a count >= 0 (0 = off)"),
    )
    eval_budget: float = _model(
        "--eval-budget",
        0.1,
        "progressive evaluation may take at most this share of a step",
        number,
        check=(lambda v: v > 0, "a share > 0 such as 0.1"),
    )
    # vocabulary: admission, caps and eviction (rows per table stay bounded)
    min_count: int = _vocabulary(
        "--min-count",
        2,
        "sightings before a user or item gets a row of its own; until then it shares one of "
        "--buckets hashed rows, so a flood of one-off ids cannot grow the tables",
        whole,
        check=(lambda v: v >= 1, "1 or more"),
    )
    buckets: int = _vocabulary(
        "--buckets", 16, "shared rows per id table", whole
    )  # checked with --min-count below
    max_users: int | None = _vocabulary(
        "--max-users", 2_000_000, "row cap of the user table (0 = none)", cap
    )
    max_items: int | None = _vocabulary(
        "--max-items", 1_000_000, "row cap of the item table (0 = none)", cap
    )
    evict_after_ms: float | None = _vocabulary(
        "--evict-after",
        "30d",
        "ids unseen for this long in event time lose their rows (0 = never)",
        duration_or_never,
        check=(lambda v: v is None or v > 0, "a duration such as 30d, or 0 for never"),
    )
    # features from the event's context
    context_fields: tuple[FieldSpec, ...] = _vocabulary(
        "--context-fields",
        "",
        "context fields the query tower reads, e.g. device,hour,price:num (categorical unless "
        ":num; unknown fields are ignored)",
        _fields,
    )
    item_features: tuple[FieldSpec, ...] = _vocabulary(
        "--item-features",
        "",
        "context fields that describe the item, e.g. item_category: a new item starts near "
        "items that share them",
        _fields,
        check=(lambda v: all(f.kind == "cat" for f in v), "categorical fields only (no :num)"),
    )
    feature_buckets: int = _vocabulary(
        "--feature-buckets",
        1000,
        "hashed rows per categorical feature",
        whole,
        check=(lambda v: v > 0, "a count > 0"),
    )

    seed: int = _model("--seed", 0, "seed of the learner's random draws", whole)

    def __post_init__(self) -> None:
        problems = [option.problem(getattr(self, name)) for name, option in options_of(self)]
        problems += [
            _unless(
                self.buckets >= (1 if self.min_count > 1 else 0),
                f"--buckets: bad value {self.buckets!r}; use at least 1 shared row when "
                "--min-count > 1",
            ),
            _unless(
                self.max_users is None or self.max_users > self.buckets,
                f"--max-users: bad value {self.max_users!r}; use a cap above --buckets",
            ),
            _unless(
                self.max_items is None or self.max_items > self.buckets,
                f"--max-items: bad value {self.max_items!r}; use a cap above --buckets",
            ),
        ]
        for problem in problems:
            if problem:
                raise ConfigError(problem)

    # settings that fix the shape of the state: a checkpoint cannot be resumed with others
    SHAPE = (
        "dim",
        "layers",
        "history",
        "buckets",
        "context_fields",
        "item_features",
        "feature_buckets",
        "prior_half_lives",
        "activity_features",
    )

    # what a checkpoint written before a shape setting existed was trained with
    LEGACY: ClassVar[dict[str, Any]] = {
        "activity_features": False,
        "prior_half_lives": [7 * 86_400_000.0],
    }

    def shape_mismatch(self, saved: dict[str, Any]) -> str | None:
        """Why a checkpoint trained with `saved` settings cannot resume under these, or None."""
        mine = json.loads(json.dumps(asdict(self), default=str))
        for key in self.SHAPE:
            was = saved.get(key, self.LEGACY.get(key, mine[key]))
            if mine[key] != was:
                option = dict(options_of(self))[key]
                return (
                    f"{option.flag} is {mine[key]!r} but the checkpoint was trained with "
                    f"{was!r}; pass the checkpoint's value to resume it"
                )
        return None


def _unless(ok: bool, problem: str) -> str | None:
    return None if ok else problem
