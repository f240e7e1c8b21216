"""Training speed: scalability with the catalogue, issue 3's step grid, and the sampler.

Each measurement runs in a fresh process (`bench.isolated`): peak memory belongs to one model
and one catalogue, and two torch threads get the OpenMP settings they need on this VM.
"""

from __future__ import annotations

from bench.isolated import run_isolated
from bench.progress import Progress
from bench.results import Results
from bench.sizes import Sizes
from bench.workers import sampler_ms, step_grid, train_scaling

SCALING, GRID, SAMPLER = "training scalability", "training step (issue 3)", "sampler"
GRID_NEGATIVES = ("in-batch", "popularity:1024", "popularity:1024,hard:64")
FULL_ONLY = "runs without --quick (filling a 1M-item catalogue takes ~45 s per process)"


def section(results: Results, sizes: Sizes, progress: Progress, quick: bool) -> None:
    _scaling(results, sizes, progress, quick)
    _grid(results, sizes, progress, quick)
    progress.step("sampler")
    n = max(sizes.catalogues)
    s = run_isolated(sampler_ms, n, 4096, 1024, 200, sizes.seed)
    label = f"{n:,} items, 4096 draws"
    results.add(
        SAMPLER,
        "ms per batch (count positives + update + draw)",
        label,
        s["update_and_draw_ms"],
        "ms",
        headline=True,
    )
    results.add(SAMPLER, "ms per batch, draws only", label, s["draw_ms"], "ms")
    results.add(SAMPLER, "p99 ms per batch", label, s["p99_ms"], "ms")
    results.note(
        SAMPLER,
        "Target (issue 3): <= 2 ms per batch for 4096 draws over 1M items "
        "whose distribution changed this batch (1024 positives counted first).",
    )
    progress.fraction(1.0)


def _scaling(results: Results, sizes: Sizes, progress: Progress, quick: bool) -> None:
    cats = [c for c in sizes.catalogues if not (quick and c >= 1_000_000)]
    jobs = [(kind, n) for n in cats for kind in ("softmax", "wals")]
    series: dict[str, dict[int, float]] = {"softmax": {}, "wals": {}}
    names = {
        "softmax": "softmax default (1 thread, B=1024)",
        "wals": "WALS (implicit ALS, full refit)",
    }
    for k, (kind, n) in enumerate(jobs):
        progress.step(f"training scalability: {kind} @ {n:,} items")
        r = run_isolated(train_scaling, kind, n, sizes.scaling_events, sizes.seed)
        results.add(
            SCALING,
            f"events/s @ {n:,} items",
            names[kind],
            r["events_per_s"],
            "ev/s",
            headline=(n == max(cats)),
        )
        results.add(
            SCALING,
            f"peak MB @ {n:,} items",
            names[kind],
            r["peak_rss_mb"] - r["base_rss_mb"],
            "MB",
        )
        series[kind][n] = r["events_per_s"]
        progress.fraction(0.4 * (k + 1) / len(jobs))
    for n in sizes.catalogues:
        if n not in cats:
            for kind in ("softmax", "wals"):
                results.pending(SCALING, f"events/s @ {n:,} items", names[kind], FULL_ONLY)
    results.series["training_scalability"] = {names[k]: v for k, v in series.items()}
    results.note(
        SCALING,
        (
            "Catalogue of N items (every item present), then "
            f"{sizes.scaling_events:,} Zipf events. "
            "Softmax: events/s of one streaming pass (default negatives). WALS: events / seconds "
            "of one full refit (10 iterations) on all events — the cost of each periodic retrain. "
            "Memory: peak resident memory of the process above what it held after imports."
        ),
    )


def _grid(results: Results, sizes: Sizes, progress: Progress, quick: bool) -> None:
    cats = tuple(c for c in sizes.grid_catalogues if not (quick and c >= 1_000_000))
    series: dict[str, dict[str, float]] = {}
    for t, threads in enumerate((1, 2)):
        progress.step(f"training step grid, {threads} thread(s)")
        rows = run_isolated(
            step_grid,
            cats,
            sizes.grid_batches,
            GRID_NEGATIVES,
            sizes.grid_seconds,
            sizes.grid_repeats,
            sizes.seed,
            threads=threads,
        )
        for r in rows:
            subject = f"{r['negatives']}, B={r['batch']}, {r['catalogue']:,} items"
            metric = f"events/s, {threads} thread{'s' if threads > 1 else ''}"
            if "error" in r:
                results.pending(GRID, metric, subject, r["error"])
                continue
            target = r["negatives"] == "popularity:1024" and r["batch"] == 1024
            results.add(
                GRID,
                metric,
                subject,
                r["events_per_s"],
                "ev/s",
                headline=target and r["catalogue"] == max(cats),
            )
            results.add(
                GRID,
                f"sampling share, {threads} thread(s)",
                subject,
                r["sampling_share"],
                "%",
                headline=target and threads == 1 and r["catalogue"] == max(cats),
            )
            series.setdefault(subject, {})[f"{threads} thread(s)"] = r["events_per_s"]
        progress.fraction(0.4 + 0.55 * (t + 1) / 2)
    for n in sizes.grid_catalogues:
        if n not in cats:
            results.pending(
                GRID, "events/s, 1 thread", f"all configurations, {n:,} items", FULL_ONLY
            )
    results.series["step_grid"] = series
    results.note(
        GRID,
        (
            "Median events/s of the learner's step over repeated timed runs (d=64, sparse "
            "Adagrad), "
            "each thread count in its own process (2 threads with OMP_PROC_BIND=true "
            "OMP_WAIT_POLICY=ACTIVE). Sampling share: time inside trainer/core/negatives.py "
            "and trainer/core/popularity.py (counting, sampler, logQ, hard-negative draws) over "
            "the time of "
            "learn(), by cProfile over 8 steps. Targets (issue 3): >= 30k events/s for "
            "popularity:1024 at B=1024 over 1M items; sampling share <= 25%."
        ),
    )
