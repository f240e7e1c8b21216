"""Serving cost of top-100 over a large catalogue: MF's stored user vector vs softmax's ψ(x).

MF serves a precomputed user vector: look it up, score the item matrix, take the top 100.
The softmax model computes ψ(x) at query time from the user's embedding and recent items (the
query-tower forward pass), then does the same scoring and top-k. Both use the reader's top-k
(`store.table.top_rows`) over the same float32 matrix, one query at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench import streams
from bench.models import Batch, Softmax
from bench.progress import Progress
from bench.results import Results
from bench.sections import variants
from bench.sizes import Sizes
from store.table import top_rows

SECTION = "serving"
K = 100


def _interleaved(fns: dict[str, Callable[[int], object]], queries: int) -> dict[str, np.ndarray]:
    """Latency (ms) of each function per query, taking turns in a rotating order, so that a
    noisy neighbour or a frequency change hits every method alike."""
    names = list(fns)
    out = {name: np.empty(queries) for name in names}
    for name in names:
        fns[name](0)  # warm
    for q in range(queries):
        for k in range(len(names)):
            name = names[(q + k) % len(names)]
            t = time.perf_counter()
            fns[name](q)
            out[name][q] = (time.perf_counter() - t) * 1e3
    return out


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    torch.set_num_threads(1)
    n, d = sizes.serving_items, 64
    rng = np.random.default_rng(sizes.seed)
    items = rng.standard_normal((n, d + 1), dtype=np.float32)
    users = rng.standard_normal((10_000, d + 1), dtype=np.float32)

    def mf(q: int) -> None:
        top_rows(items @ users[q % len(users)], K)

    fns: dict[str, Callable[[int], object]] = {"MF (precomputed user vector)": mf}
    for label, layers in (("softmax linear tower", ()), ("softmax MLP tower 256,128", (256, 128))):
        progress.step(f"serving: training a small {label}")
        model = Softmax(label, variants.default().settings(sizes.seed, layers=layers))
        st = streams.trending(20_000, 2_000, 5_000, seed=sizes.seed)
        for lo in range(0, len(st), 1024):
            hi = lo + 1024
            model.learn(Batch(st.users[lo:hi], st.items[lo:hi], st.ts[lo:hi]))
        learner = model.learner

        def psi(q: int, learner: Any = learner) -> np.ndarray:
            rows = learner.users.admitted_rows()
            v = learner.scoring.query_vectors(rows[q % len(rows) : q % len(rows) + 1]).numpy()[0]
            return np.append(v, np.float32(1.0))

        def softmax(q: int, psi: Callable[[int], np.ndarray] = psi) -> None:
            top_rows(items @ psi(q), K)

        fns[f"{label}: ψ(x) forward only"] = psi
        fns[f"{label}: ψ(x) + top-{K}"] = softmax
        progress.fraction(0.2 + 0.2 * len(fns) / 5)
    progress.step("serving: timing top-100 queries, methods taking turns")
    lat = _interleaved(fns, sizes.serving_queries)
    for name, ms in lat.items():
        headline = "forward only" not in name and "MLP" not in name
        results.add(
            SECTION,
            f"top-{K} p50 ms @ {n:,} items",
            name,
            float(np.median(ms)),
            "ms",
            headline=headline,
        )
        results.add(
            SECTION, f"top-{K} p99 ms @ {n:,} items", name, float(np.percentile(ms, 99)), "ms"
        )
    results.note(
        SECTION,
        (
            f"{n:,} items x {d}+1 float32 (bias folded in), one query at a time, 1 thread, "
            f"{sizes.serving_queries} queries after one warm-up. The cost to publish the item "
            "table is in the pipeline section (publish row)."
        ),
    )
