"""Checkpoints beside training: the stall per checkpoint and the write, at N users + N items.

Each size runs `bench.checkpoints.measure` in a fresh process (its own memory): the trainer's
`Checkpointer` on a learner that knows N users and N items, the stall (`Learner.copy_into` a
warmed twin, median of 3) against memory copy speed, the write on the checkpoint thread
against the disk's sequential write speed measured in the same run, and the restart's load.
The largest size is also estimated at 10M from the two largest measured (linear in N).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.checkpoints import estimate, measure, rows_of
from bench.isolated import run_isolated
from bench.progress import Progress
from bench.results import Results
from bench.sizes import Sizes

SECTION = "checkpoints"
ESTIMATED = 10_000_000


def section(results: Results, sizes: Sizes, progress: Progress) -> None:
    measured: list[dict[str, Any]] = []
    for k, n in enumerate(sizes.checkpoint_rows):
        progress.step(f"checkpoints: {n:,} users + {n:,} items")
        with tempfile.TemporaryDirectory(prefix="recstream-ckpt-") as d:
            measured.append(run_isolated(measure, n, Path(d), 3, sizes.seed))
        progress.fraction((k + 1) / len(sizes.checkpoint_rows))
    for r in measured:
        _rows(results, r, f"{r['rows']:,} users + {r['rows']:,} items")
    if len(measured) >= 2:
        _rows(results, estimate(measured, ESTIMATED), f"{ESTIMATED:,} + {ESTIMATED:,} (estimate)")
    else:
        results.pending(
            SECTION,
            "stall: Learner.copy_into a warmed twin (median)",
            f"{ESTIMATED:,} + {ESTIMATED:,} (estimate)",
            "needs two measured sizes (full mode: 100k and 1M)",
        )
    results.note(
        SECTION,
        "The trainer's own Checkpointer on a learner with the default settings that knows N "
        "users and N items (each id learned in batches of 8192 distinct ids; the row caps "
        "lifted to fit), a stand-in source. Stall = `begin` (copy into the twin: the "
        "recstream_checkpoint_stall_seconds gauge), the first into a new twin, then the "
        "median of 3 into the warmed twin; its floor = the state's bytes at this machine's "
        "memory copy speed. Write = the checkpoint thread's `CommitSequence.write` "
        "(state.safetensors, state.json, serving.safetensors from to_snapshot, fsyncs, "
        "manifest, rename), held to the disk's speed writing the same number of bytes from "
        "one buffer and fsyncing, in the same folder and run. Training beside a write = the "
        "default learner's events/s while a write runs on the checkpoint thread over its "
        "events/s alone (the GIL and 2 cores shared). Restore = Checkpointer.restore of the "
        "newest checkpoint (manifest check, load, Learner.from_state): a restart's load. "
        "10M: time and bytes a + b·N through the two largest sizes.",
    )


def _rows(results: Results, r: dict[str, Any], size: str) -> None:
    for what, value, unit in rows_of(r):
        headline = what.startswith(("stall: ", "write / disk"))
        results.add(SECTION, what, size, value, unit, headline=headline)
