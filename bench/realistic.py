"""The realistic comparison: softmax variants and baselines on several seeds of the ratings
stream (`bench.ratings`), judged as on real data (`bench.judge`).

Run it alone to compare learner settings; each ``--softmax`` is ``NAME[:SETTING=VALUE,...]``
(``ModelSettings`` fields, values written as on the trainer's command line), ``default`` is the
defaults:

    python -m bench.realistic --seeds 0,1,2 --events 300000 \\
        --softmax default --softmax prior0:popularity_prior=0,half_life_ms=1d

The `realistic` bench section runs the same at the suite's sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import judge, ratings
from bench.models import Model
from bench.sections import variants
from bench.streams import DAY_MS

if TYPE_CHECKING:
    from trainer.options import Option

Values = dict[str, dict[str, list[float | str]]]  # model → metric → one entry per seed
BASELINES = ("decayed-1d", "decayed-7d", "popular", "knn", "wals", "river")


@dataclass(frozen=True)
class Scale:
    events: int = 1_000_000  # ratings; the positives are ~60% of them
    users: int = 60_000
    items: int = 20_000

    @classmethod
    def of(cls, events: int) -> Scale:
        """The full size's proportions: 6 users and 2 items per 100 ratings."""
        return cls(events, max(10, events * 6 // 100), max(10, events * 2 // 100))


@dataclass
class Outcome:
    values: Values = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)  # one description per seed
    seeds: list[int] = field(default_factory=list)


def softmax_variant(text: str) -> variants.Variant:
    """``default`` or ``NAME[:SETTING=VALUE,...]`` → a variant; ValueError says what is wrong.

    >>> softmax_variant("p0:popularity_prior=0,half_life_ms=1d").changes
    {'popularity_prior': 0.0, 'half_life_ms': 86400000.0}
    """
    from trainer.core.settings import ModelSettings
    from trainer.options import options_of

    if text == "default":
        return variants.default()
    name, _, spec = text.partition(":")
    options = dict(options_of(ModelSettings))
    changes = {}
    for item in _settings(spec):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--softmax {text!r}: write SETTING=VALUE, got {item!r}")
        if key not in options:
            near = difflib.get_close_matches(key, list(options), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ValueError(
                f"--softmax {text!r}: ModelSettings has no setting {key!r}{hint}; "
                f"settings: {', '.join(options)}"
            )
        changes[key] = _value(options[key], raw.strip(), text)
    v = variants.Variant(f"softmax {name}", changes=changes)
    try:
        v.settings(0)
    except Exception as e:  # ConfigError from the learner's own checks
        raise ValueError(f"--softmax {text!r}: {e}") from e
    return v


def _settings(spec: str) -> list[str]:
    """Split on the commas that start a new SETTING=: values may hold commas (negatives)."""
    out: list[str] = []
    for part in spec.split(",") if spec else []:
        if "=" in part or not out:
            out.append(part)
        else:
            out[-1] += "," + part
    return out


def _value(option: Option, raw: str, text: str) -> Any:
    if option.switch:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--softmax {text!r}: {option.flag} is on or off: write true/false")
        return raw.lower() in ("true", "1", "yes")
    try:
        return option.setting(option.read(raw))
    except ValueError as e:
        raise ValueError(f"--softmax {text!r}: {e}") from e


def models(seed: int, softmax: Sequence[variants.Variant], chosen: Sequence[str]) -> list[Model]:
    from bench.baselines import WALS, DecayedPopular, ItemKNN, MostPopular, RiverMF
    from bench.models import Softmax

    out: list[Model] = [Softmax(v.name, v.settings(seed)) for v in softmax]
    make: dict[str, Callable[[], Model]] = {
        "decayed-1d": lambda: DecayedPopular(DAY_MS, "popular-decayed (half-life 1d)"),
        "decayed-7d": lambda: DecayedPopular(7 * DAY_MS, "popular-decayed (half-life 7d)"),
        "popular": lambda: MostPopular("most-popular (all time)"),
        "knn": lambda: ItemKNN("item-kNN (cosine)"),
        "wals": lambda: WALS("WALS w0=0.01 (implicit ALS)", w0=0.01, retrain_every=10**12),
        "river": lambda: RiverMF("river BiasedMF (+2 sampled negatives)", seed=seed),
    }
    return out + [make[b]() for b in BASELINES if b in chosen]


def run(
    seeds: Sequence[int],
    scale: Scale,
    softmax: Sequence[variants.Variant],
    chosen: Sequence[str] = BASELINES,
    shape: ratings.Shape | None = None,
    plan: judge.JudgePlan | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Outcome:
    """Every model on every seed; `progress(fraction done, what)` as it goes."""
    shape = shape or ratings.Shape()
    plan = plan or judge.JudgePlan()
    out = Outcome()
    for k, seed in enumerate(seeds):

        def say(f: float, what: str, k: int = k, seed: int = seed) -> None:
            if progress is not None:
                progress((k + f) / len(seeds), f"seed {seed}: {what}")

        say(0, "generating the stream")
        r = ratings.ratings(scale.events, scale.users, scale.items, seed=seed, shape=shape)
        sp = judge.split(r.stream, dataclasses.replace(plan, seed=seed))
        out.streams.append(
            f"seed {seed}: {r.describe()}; cut after {sp.cut:,} positives; "
            f"{len(sp.warm):,} warm and {len(sp.known):,} cold users evaluated"
        )
        out.seeds.append(seed)
        ms = models(seed, softmax, chosen)
        for j, m in enumerate(ms):
            say(j / len(ms), m.name)
            took = judge.learn(r.stream, [m], sp.cut, plan.batch_size)[m.name]
            got = judge.evaluate(m, sp)
            got[judge.SPEED] = sp.cut / max(took, 1e-9)
            for metric, value in got.items():
                out.values.setdefault(m.name, {}).setdefault(metric, []).append(value)
            del m
        say(1, "done")
    return out


def summary(values: list[float | str]) -> tuple[float | None, float | None, str]:
    """(mean, sample sd or None, reason when there is no number)."""
    nums = [v for v in values if isinstance(v, float)]
    if not nums:
        return None, None, str(values[0]) if values else "not measured"
    sd = float(np.std(nums, ddof=1)) if len(nums) > 1 else None
    return float(np.mean(nums)), sd, ""


def paired(out: Outcome, model: str, against: str, metric: str) -> list[float | str]:
    """`model` − `against` per seed: the seeds' streams differ more than models often do, so
    a comparison reads best seed by seed."""
    mine, theirs = out.values[model].get(metric, []), out.values[against].get(metric, [])
    return [
        a - b if isinstance(a, float) and isinstance(b, float) else "n/a"
        for a, b in zip(mine, theirs, strict=True)
    ]


MAIN = (*judge.WARM, judge.COLD, judge.NEW, judge.SPEED)


def table(out: Outcome, metrics: Sequence[str] = MAIN) -> str:
    """Mean ± sd over seeds; the difference from the first model, paired by seed; then one row
    per model and seed (text, for a terminal)."""
    rows = [["model", *metrics]]
    for name, by_metric in out.values.items():
        rows.append([name, *(_cell(*summary(by_metric.get(m, []))[:2]) for m in metrics)])
    first = next(iter(out.values), None)
    if first is not None and len(out.values) > 1:
        rows.append([f"minus {first}, paired by seed:", *[""] * len(metrics)])
        for name in list(out.values)[1:]:
            diffs = [summary(paired(out, name, first, m))[:2] for m in metrics]
            rows.append([f"  {name}", *(_cell(mean, sd, sign=True) for mean, sd in diffs)])
    rows.append([f"per seed ({', '.join(map(str, out.seeds))}):", *[""] * len(metrics)])
    for name, by_metric in out.values.items():
        for k, seed in enumerate(out.seeds):
            cells = [_cell(_at(by_metric, m, k)) for m in metrics]
            rows.append([f"  {name} [seed {seed}]", *cells])
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*out.streams, "", *lines])


def _cell(v: float | str | None, sd: float | None = None, sign: bool = False) -> str:
    if not isinstance(v, float):
        return "n/a"
    fmt = ("+" if sign else "") + (",.0f" if abs(v) >= 100 else ".3f")
    return f"{v:{fmt}}" + ("" if sd is None else f" ±{sd:{fmt.lstrip('+')}}")


def _at(by_metric: dict[str, list[float | str]], metric: str, k: int) -> float | str | None:
    v = by_metric.get(metric, [])
    return v[k] if k < len(v) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.realistic",
        description="Softmax variants and baselines on seeds of the realistic ratings stream, "
        "judged like real data (see bench/judge.py); prints a table.",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated stream seeds")
    p.add_argument("--events", type=int, default=300_000, help="ratings per stream")
    p.add_argument("--users", type=int, default=None, help="default: 6%% of --events")
    p.add_argument("--items", type=int, default=None, help="default: 2%% of --events")
    p.add_argument(
        "--softmax",
        action="append",
        metavar="NAME[:SETTING=VALUE,...]",
        help="a softmax variant (repeatable); 'default' = ModelSettings() as shipped",
    )
    p.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated baselines to run (default all: {','.join(BASELINES)}; "
        "'none' for none)",
    )
    p.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="change a knob of the stream (bench.ratings.Shape), e.g. taste=1.5",
    )
    p.add_argument(
        "--all-metrics",
        action="store_true",
        help="also the variants: past items kept in the ranking, hits / min(k, n)",
    )
    a = p.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s]
        softmax = [softmax_variant(t) for t in (a.softmax or ["default"])]
        chosen = [] if a.baselines == "none" else [b for b in a.baselines.split(",") if b]
        unknown = [b for b in chosen if b not in BASELINES]
        if unknown:
            raise ValueError(f"--baselines: unknown {unknown}; choose from {BASELINES}")
        shape = _shape(a.shape)
    except ValueError as e:
        p.error(str(e))
    import torch

    torch.set_num_threads(1)
    scale = Scale.of(a.events)
    scale = Scale(a.events, a.users or scale.users, a.items or scale.items)
    started = time.monotonic()

    def progress(f: float, what: str) -> None:
        print(f"[{time.monotonic() - started:5.0f}s {100 * f:3.0f}%] {what}", file=sys.stderr)

    out = run(seeds, scale, softmax, chosen, shape, progress=progress)
    print(f"shape: {shape}")
    print(table(out, judge.METRICS if a.all_metrics else MAIN))
    return 0


def _shape(texts: Sequence[str]) -> ratings.Shape:
    knobs = {f.name: f.type for f in dataclasses.fields(ratings.Shape)}
    changes: dict[str, float | int] = {}
    for text in texts:
        key, _, raw = text.partition("=")
        if key not in knobs:
            raise ValueError(f"--shape {text!r}: no knob {key!r}; knobs: {', '.join(knobs)}")
        kind = type(getattr(ratings.Shape(), key))
        try:
            changes[key] = kind(raw)
        except ValueError:
            raise ValueError(f"--shape {text!r}: {key} takes a {kind.__name__}") from None
    return ratings.Shape(**changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
