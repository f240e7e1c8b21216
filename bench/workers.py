"""Work that runs in a fresh process (see `bench.isolated`): training speed and memory.

Each function takes plain arguments, returns plain dicts, and measures inside the process so
peak memory and thread settings belong to one experiment.
"""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
import statistics
import time
from typing import Any

import numpy as np

from bench import streams
from bench.isolated import peak_rss_mb, rss_mb
from bench.models import Batch, columns
from trainer.core.learner import EventColumns, Learner
from trainer.core.negatives import parse_negatives
from trainer.core.settings import ModelSettings

_SAMPLING_FILES = ("trainer/core/negatives.py", "trainer/core/popularity.py")


def settings_for(negatives: str, seed: int = 0, **changes: Any) -> ModelSettings:
    fields = {f.name for f in dataclasses.fields(ModelSettings)}
    if "eval_sample" in fields:
        changes.setdefault("eval_sample", 0)
    return dataclasses.replace(
        ModelSettings(), negatives=parse_negatives(negatives), seed=seed, **changes
    )


def batches(st: streams.Stream, lo: int, hi: int, size: int) -> list[EventColumns]:
    return [
        columns(Batch(st.users[a : a + size], st.items[a : a + size], st.ts[a : a + size]))
        for a in range(lo, hi - size + 1, size)
    ]


def warm(settings: ModelSettings, st: streams.Stream, n_items: int) -> Learner:
    """A learner that knows all `n_items` items (one event each), then has `settings`.

    The catalogue pass uses cheap uniform negatives in big batches; the state then moves into
    a learner with the measured settings, as a restart with new flags would.
    """
    cheap = Learner(dataclasses.replace(settings, negatives=parse_negatives("uniform:8")))
    for cols in batches(st, 0, n_items, 8192):
        cheap.learn(cols)
    rest = n_items % 8192
    if rest:
        cheap.learn(batches(st, n_items - rest, n_items, rest)[0])
    tensors, meta = cheap.state()
    return Learner.from_state(settings, tensors, meta)


def sampling_share(learner: Learner, work: list[EventColumns]) -> float:
    """Share of `learn` time spent in negatives.py + popularity.py (cProfile, outermost calls)."""
    prof = cProfile.Profile()
    prof.enable()
    for cols in work:
        learner.learn(cols)
    prof.disable()
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    inside = 0.0
    total = 0.0
    for (path, _, name), (_, _, _, cum, callers) in stats.items():
        if name == "learn" and path.endswith("trainer/core/learner.py"):
            total += cum
        if path.endswith(_SAMPLING_FILES):
            for (cpath, _, _), caller in callers.items():
                if not cpath.endswith(_SAMPLING_FILES):
                    inside += caller[3]
    return inside / total if total else float("nan")


def timed_rate(learner: Learner, work: list[EventColumns], seconds: float) -> float:
    done, k, t0 = 0, 0, time.perf_counter()
    while True:
        cols = work[k % len(work)]
        learner.learn(cols)
        done += len(cols)
        k += 1
        if time.perf_counter() - t0 >= seconds and k >= 3:
            return done / (time.perf_counter() - t0)


def step_grid(
    catalogues: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    negatives: tuple[str, ...],
    seconds: float,
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Events/s of the training step per (catalogue, batch size, negatives), in this process."""
    out = []
    for n_items in catalogues:
        st = streams.catalogue_stream(200_000, n_items, 100_000, seed=seed)
        base = warm(settings_for("uniform:8", seed), st, n_items)
        tensors, meta = base.state()
        del base
        for b in batch_sizes:
            work = batches(st, n_items, len(st), b)[:64]
            for neg in negatives:
                row: dict[str, Any] = {"catalogue": n_items, "batch": b, "negatives": neg}
                try:
                    learner = Learner.from_state(settings_for(neg, seed), tensors, meta)
                    for cols in work[:3]:
                        learner.learn(cols)
                    rates = [timed_rate(learner, work, seconds) for _ in range(repeats)]
                    row["events_per_s"] = statistics.median(rates)
                    row["sampling_share"] = sampling_share(learner, work[:8])
                except Exception as e:  # reported as a pending row with the reason
                    row["error"] = f"{type(e).__name__}: {e}"
                out.append(row)
    return out


def sampler_ms(n_items: int, draws: int, positives: int, reps: int, seed: int) -> dict[str, Any]:
    """ms per batch over `n_items` items: count a batch's positives (so the distribution
    changed this batch), update the sampler, draw `draws` items with their probabilities."""
    from trainer.core.popularity import DecayedCounts, PopularitySampler

    st = streams.catalogue_stream(positives * (reps + 10), n_items, 10_000, seed=seed)
    counts = DecayedCounts(7 * streams.DAY_MS)
    counts.add(st.items[:n_items], st.ts[:n_items])
    sampler = PopularitySampler(counts, 0.75, 0.05, seed=seed)
    whole, draw_only = [], []
    now = int(st.ts[n_items])
    for k in range(reps):
        rows = st.items[n_items + k * positives : n_items + (k + 1) * positives]
        ts = np.full(len(rows), now + k * 1000, np.int64)
        t0 = time.perf_counter()
        sampler.rescaled(counts.add(rows, ts))
        sampler.update(rows)
        t1 = time.perf_counter()
        sampler.sample(draws)
        t2 = time.perf_counter()
        whole.append((t2 - t0) * 1e3)
        draw_only.append((t2 - t1) * 1e3)
    return {
        "update_and_draw_ms": statistics.median(whole),
        "draw_ms": statistics.median(draw_only),
        "p99_ms": float(np.percentile(whole, 99)),
    }


def train_scaling(kind: str, n_items: int, events: int, seed: int) -> dict[str, Any]:
    """Training events/s and memory for `kind` ("softmax" or "wals") over `n_items` items."""
    base_rss = rss_mb()
    st = streams.catalogue_stream(events, n_items, 50_000, seed=seed)
    if kind == "softmax":
        from trainer.core.negatives import DEFAULT_NEGATIVES

        learner = warm(settings_for(DEFAULT_NEGATIVES, seed), st, n_items)
        work = batches(st, n_items, len(st), 1024)
        t0 = time.perf_counter()
        for cols in work:
            learner.learn(cols)
        rate = len(work) * 1024 / (time.perf_counter() - t0)
    else:
        from bench.baselines import WALS

        model = WALS(w0=0.01, retrain_every=10**12)
        model.learn(Batch(st.users, st.items, st.ts))  # one full fit on every event
        rate = len(st) / model.fit_seconds[-1]
    return {"events_per_s": rate, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss}
