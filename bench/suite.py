"""The whole benchmark: sections in order, one progress bar, then report.md and the plots."""

from __future__ import annotations

import importlib
import inspect
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import cli, report
from bench.progress import Progress
from bench.results import Results
from bench.sizes import Sizes
from trainer.daemon.allocator import keep_freed_memory

log = logging.getLogger("bench")

Section = Callable[[Results, Sizes, Progress, bool], None]


def _section(name: str) -> Section:
    """``bench.sections.<name>.section``, called with `quick` only if it takes it."""
    section = importlib.import_module(f"bench.sections.{name}").section
    if "quick" in inspect.signature(section).parameters:
        return section
    return lambda results, sizes, progress, quick: section(results, sizes, progress)


# bench.cli names the sections (building the parser must not import torch); this runs them
SECTIONS: dict[str, Section] = {name: _section(name) for name in cli.SECTIONS}


def run_suite(
    out: Path,
    sizes: Sizes,
    quick: bool,
    only: tuple[str, ...] = (),
    progress: bool | None = None,
    command: str = "recstream bench",
) -> tuple[Results, Path]:
    """Run the chosen sections (all by default); a failing section becomes a noted row."""
    import torch

    torch.set_num_threads(1)  # measurements that want two threads run in their own process
    keep_freed_memory()  # as the trainer runs
    chosen = [s for s in SECTIONS if not only or s in only]
    results = Results()
    bar = Progress(len(chosen), progress)
    started = time.monotonic()
    try:
        for name in chosen:
            bar.start(name)
            before = {r.section for r in results.rows}
            t0 = time.monotonic()
            try:
                SECTIONS[name](results, sizes, bar, quick)
            except Exception as e:  # one broken section must not hide the others' figures
                log.error("section %s failed:\n%s", name, traceback.format_exc())
                results.pending(name, "section failed", name, f"{type(e).__name__}: {e}")
            took = time.monotonic() - t0
            for s in {r.section for r in results.rows} - before:
                results.seconds[s] = took
            bar.finish()
    finally:
        bar.close()
    mode = "quick" if quick else "full"
    path = report.write(results, out, mode, time.monotonic() - started, command)
    return results, path
