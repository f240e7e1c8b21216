"""The learner against this machine's compute ceiling, measured in the same process.

- `matmul_gflops`: fp32 torch.mm GFLOP/s on one thread at the step's own shapes: the shared
  logits (B×d)@(d×S) and their two backward products (B×S)@(S×d) and (S×B)@(B×d).
- `flops_per_event`: what one event of a configuration costs in multiply-adds (×2), counted
  from the settings and what the step touched (see its docstring); the ceiling in events/s is
  GFLOP/s / FLOPs per event.
- `learner_alone`: the default learner on a realistic event log (the pipeline's: the ratings
  stream, many users with histories, a catalogue that grows, progressive evaluation on),
  decoded as the trainer decodes it, learned in batches in log order.
- `catalogue_run`: the learner over a catalogue of N items known beforehand (each item seen
  twice, so --min-count 2 admitted it), then `bench.streams.catalogue_stream` traffic.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainer.core.settings import ModelSettings


def matmul_gflops(batch: int, shared: int, dim: int, seconds: float = 0.6) -> float:
    """fp32 GFLOP/s of the step's three shared-logit products on this thread (median of 3)."""
    import torch

    shapes = [(batch, dim, shared), (batch, shared, dim), (shared, batch, dim)]  # (m, k, n)
    ops = [
        (torch.randn(m, k), torch.randn(k, n), torch.empty(m, n), 2.0 * m * k * n)
        for m, k, n in shapes
    ]
    flops = sum(op[3] for op in ops)
    for a, b, out, _ in ops:  # warm
        torch.mm(a, b, out=out)
    rounds = []
    for _ in range(3):
        done, t0 = 0, time.perf_counter()
        while True:
            for a, b, out, _ in ops:
                torch.mm(a, b, out=out)
            done += 1
            if time.perf_counter() - t0 >= seconds / 3:
                break
        rounds.append(done * flops / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rounds)


def flops_per_event(
    s: ModelSettings, batch: int, shared: float, touched: float, history: float
) -> dict[str, float]:
    """FLOPs per event of the training step (forward + backward), by part.

    `shared`: shared negative columns per batch (popularity draws + in-batch positives);
    `touched`: item rows the step gathered per batch (positives, negatives, histories);
    `history`: history items per query on average. Counted: the shared logits ψ·V (2·d·S
    forward, 4·d·S backward: the gradients of ψ and of the columns), the positives' scores,
    the tower (each linear layer 2·in·out forward, 4·in·out backward), the history mean
    (2·d per item forward and backward), gravity (ΨᵀΨ and the touched rows' ṼᵀṼ: 2·d² per
    row forward, 4·d² backward, and the Gramian's swap of those rows, 4·d² in float64).
    Not counted: gathers, the sparse Adagrad update, sampling (memory-bound, no matmul)."""
    from trainer.core.activity import FEATURES

    d = s.dim
    hard = sum(n.count for n in s.negatives if n.name == "hard")
    n_num = len(s.context_fields) + (FEATURES if s.activity_features else 0)
    widths = [(2 + len(s.context_fields)) * d + n_num, *s.layers, d]
    tower = sum(6.0 * a * b for a, b in itertools.pairwise(widths))
    out = {
        "shared logits": 6.0 * d * shared,
        "hard negatives": 6.0 * d * hard,
        "positives": 6.0 * d,
        "tower": tower,
        "history mean": 4.0 * d * history,
    }
    if s.gravity:
        out["gravity"] = 6.0 * d * d + 10.0 * d * d * touched / batch
    return out


def realistic_log(path: Path, events: int, seed: int) -> tuple[int, str]:
    """Write `events` positives of the ratings stream (bench.ratings at its calibrated
    proportions: 60k users and 20k items per 1M ratings, ~56% of ratings end up positives) as
    JSON lines ("u<k>", "i<k>", event time); returns how many (a short stream has fewer) and
    the stream's description."""
    from bench import ratings
    from stream.synthetic import write_jsonl

    n_ratings = int(events / 0.56) + 100
    r = ratings.ratings(n_ratings, max(100, n_ratings * 6 // 100), max(100, n_ratings // 50), seed)
    st = r.stream
    n = min(events, len(st))
    columns = (st.users[:n].tolist(), st.items[:n].tolist(), st.ts[:n].tolist())
    write_jsonl(
        path,
        ({"user": f"u{u}", "item": f"i{i}", "ts": t} for u, i, t in zip(*columns, strict=True)),
    )
    return n, r.describe()


def read_log(path: Path, batch: int) -> list[Any]:
    """The log's events decoded as the source decodes them, in batches of `batch` columns."""
    from stream.event import Decoder
    from stream.files import iter_lines
    from trainer.core.learner import EventColumns

    decode = Decoder().decode
    events = [decode(line) for line in iter_lines(path)]
    return [EventColumns.from_events(events[k : k + batch]) for k in range(0, len(events), batch)]


def _learn_all(learner: Any, work: list[Any], budget_s: float | None = None) -> dict[str, float]:
    """Learn the batches (all, or until `budget_s` of learning); events/s, the step's own
    events/s (without the evaluation), and what the step did per batch."""
    seconds = eval_ms = 0.0
    touched, shared, hist = [], [], []
    events = 0
    for cols in work:
        rows = learner.users.lookup(cols.users)
        known = learner.history.items[rows[rows >= 0]]
        hist.append(float((known >= 0).sum()) / len(cols))  # items per query, before the batch
        t0 = time.perf_counter()
        stats = learner.learn(cols)
        seconds += time.perf_counter() - t0
        eval_ms += stats.timings_ms.get("eval", 0.0)
        events += len(cols)
        touched.append(len(learner.step.touched))
        shared.append(stats.negatives - _hard(learner.settings))
        if budget_s is not None and seconds >= budget_s:
            break
    return {
        "events": events,
        "events_per_s": events / seconds,
        "step_events_per_s": events / max(seconds - eval_ms / 1e3, 1e-9),
        "eval_share": eval_ms / 1e3 / seconds,
        "touched": float(np.mean(touched)),
        "shared": float(np.mean(shared)),
        "history": float(np.mean(hist)),
    }


def _hard(s: ModelSettings) -> int:
    return sum(n.count for n in s.negatives if n.name == "hard")


def _with_ceiling(out: dict[str, Any], s: ModelSettings, batch: int, before: float) -> None:
    """Add the GFLOP/s (mean of before and after the run), FLOPs per event and the shares."""
    gflops = (before + matmul_gflops(batch, round(out["shared"]), s.dim)) / 2
    parts = flops_per_event(s, batch, out["shared"], out["touched"], out["history"])
    per_event = sum(parts.values())
    ceiling = gflops * 1e9 / per_event
    out.update(
        gflops=gflops,
        flops_per_event=per_event,
        flops_parts=parts,
        ceiling_events_per_s=ceiling,
        share=out["events_per_s"] / ceiling,
        step_share=out["step_events_per_s"] / ceiling,
    )


def learner_alone(log: Path, batch: int = 1024) -> dict[str, Any]:
    """The default learner on `log` (all of it, in order), against the ceiling of this run."""
    import torch

    from trainer.core.learner import Learner

    torch.set_num_threads(1)
    s = ModelSettings()
    work = read_log(log, batch)
    before = matmul_gflops(batch, 256 + batch, s.dim)
    out: dict[str, Any] = _learn_all(Learner(s), work)
    _with_ceiling(out, s, batch, before)
    return out


def catalogue_run(
    items: int,
    users: int,
    negatives: str = "popularity:1024",
    batch: int = 1024,
    seconds: float = 8.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The default learner but `negatives`, over a catalogue of `items` known items and
    `users` users (each seen twice), on catalogue_stream traffic for about `seconds`."""
    import torch

    from bench.checkpoints import filled
    from bench.streams import catalogue_stream
    from bench.workers import batches
    from trainer.core.negatives import parse_negatives

    torch.set_num_threads(1)
    learner = filled(users, items, seed)
    s = dataclasses.replace(learner.settings, negatives=parse_negatives(negatives))
    learner.settings = s  # read per step
    st = catalogue_stream(items + 400 * batch, items, users, seed=seed)
    work = batches(st, items, len(st), batch)
    for cols in work[:3]:
        learner.learn(cols)
    before = matmul_gflops(batch, 1024, s.dim)
    out: dict[str, Any] = _learn_all(learner, work[3:], budget_s=seconds)
    _with_ceiling(out, s, batch, before)
    out["items"] = len(learner.items)
    return out
