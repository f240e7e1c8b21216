"""Checkpoint stall and write at N users + N items, held to this machine's memory and disk speeds.

`python -m bench.checkpoints --rows 100000,1000000` builds a learner that knows N users and N
items (each id learned twice in big batches of distinct ids with cheap negatives, so --min-count
2 admits it; then the default settings), and runs the trainer's own `Checkpointer` on it with a
stand-in source: `begin` is the stall (`Learner.copy_into` a twin, timed as the daemon's
`recstream_checkpoint_stall_seconds` gauge times it), and the write on the checkpoint thread is
`CheckpointStore.save` of the twin's arrays plus the serving file (`to_snapshot`). The first
checkpoint fills a new twin; the stall reported is the median of the next `repeats`, into the
warmed twin, as a running daemon's are. In the same run: the disk's sequential write speed
(a file of the checkpoint's size written from one reused buffer, then fsynced, in the same
folder), memory copy speed (the same bytes into a reused buffer), the trainer's events/s while a
write runs beside it vs without, and the restart's load (`Checkpointer.restore`). Sizes not
measured are estimated from the two largest measured ones (time and bytes linear in N).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

START_MS = 1_700_000_000_000
FILL_BATCH = 8192


class _Source:
    """What the commit sequence asks of a source: nothing to flush, nothing to commit."""

    def flush(self) -> None:
        pass

    def commit(self, offsets: dict[str, int]) -> None:
        pass


def filled(n_users: int, n_items: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A learner with the default settings (row caps lifted to fit) that knows `n_users` users
    and `n_items` items. Filled with uniform:8 negatives and no evaluation, in batches of 8192
    distinct ids, each batch learned until its ids are admitted (twice: --min-count 2); those
    two settings shape no state, so the state is a default learner's at this size."""
    from trainer.core.learner import EventColumns, Learner
    from trainer.core.negatives import parse_negatives
    from trainer.core.settings import ModelSettings

    base = ModelSettings(seed=seed)
    target = dataclasses.replace(
        base,
        max_users=max(base.max_users or 0, n_users + base.buckets + 1),
        max_items=max(base.max_items or 0, n_items + base.buckets + 1),
    )
    cheap = dataclasses.replace(target, negatives=parse_negatives("uniform:8"), eval_sample=0)
    learner = Learner(cheap)
    n = max(n_users, n_items)
    users = [f"u{k % n_users}" for k in range(n)]  # the smaller side's ids come round again
    items = [f"i{k % n_items}" for k in range(n)]
    ts = np.full(FILL_BATCH, START_MS, np.int64)
    weights = np.ones(FILL_BATCH, np.float32)
    for lo in range(0, n, FILL_BATCH):
        k = min(FILL_BATCH, n - lo)
        cols = EventColumns(users[lo : lo + k], items[lo : lo + k], ts[:k], weights[:k])
        for _ in range(3):  # --min-count 2: the second sighting admits, or a third one if
            learner.learn(cols)  # the sketch halved its counts in between
            if (learner.users.lookup(cols.users) >= 0).all() and (
                learner.items.lookup(cols.items) >= 0
            ).all():
                break
    learner.settings = target  # read per step: from here it learns as the default learner
    return learner


def traffic(n: int, batches: int, seed: int = 0) -> list[Any]:
    """Batches of 1024 known ids (Zipf items, uniform users), for training beside a write."""
    from trainer.core.learner import EventColumns

    rng = np.random.default_rng(seed)
    out = []
    for k in range(batches):
        users = rng.integers(0, n, 1024)
        items = np.minimum(rng.zipf(1.1, 1024) - 1, n - 1)
        out.append(
            EventColumns(
                [f"u{u}" for u in users.tolist()],
                [f"i{i}" for i in items.tolist()],
                np.full(1024, START_MS + 1000 * (k + 1), np.int64),
                np.ones(1024, np.float32),
            )
        )
    return out


def disk_write_mb_s(directory: Path, nbytes: int, buffer_mb: int = 16) -> float:
    """Sequential write speed of `directory`'s disk: `nbytes` from one reused buffer, then
    fsync (the checkpoint fsyncs each file too)."""
    buf = np.random.default_rng(0).integers(0, 255, buffer_mb << 20, dtype=np.uint8).tobytes()
    path = directory / ".disk-speed"
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = nbytes
        while left > 0:
            left -= os.write(fd, buf[: min(left, len(buf))])
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    path.unlink()
    return nbytes / seconds / 1e6


def copy_gb_s(nbytes: int, repeats: int = 3) -> float:
    """Memory copy speed: `nbytes` into a warmed buffer (the stall's floor)."""
    src = np.ones(max(nbytes, 1), np.uint8)
    dst = np.zeros_like(src)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return nbytes / min(times) / 1e9


@contextlib.contextmanager
def _timed(spent: dict[str, float]) -> Iterator[None]:
    """Time the write's parts where the product calls them (restored on exit)."""
    import store
    from trainer.daemon import checkpoint, checkpointing

    patches = [
        (checkpoint, "write_tensors", "state.safetensors (write_tensors)"),
        (checkpointing, "to_snapshot", "serving: to_snapshot"),
        (store, "save_snapshot", "serving: save_snapshot (incl. its fsync)"),
        (checkpoint, "fsync_file", "fsync of each file (again)"),
        (checkpoint, "crc_of", "CRC read-back of the other files"),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]

    def wrap(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        return timed

    for (module, name, label), (_, _, fn) in zip(patches, saved, strict=True):
        setattr(module, name, wrap(fn, label))
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def _state_bytes(learner: Any) -> int:
    from trainer.core.state import as_numpy

    arrays, _ = learner.state(copy=False)
    return int(sum(as_numpy(a).nbytes for a in arrays.values()))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def measure(
    n: int, directory: Path, repeats: int = 3, seed: int = 0, verbose: bool = False
) -> dict[str, Any]:
    """Stall, write, disk and memory speeds, training beside a write, and the restore, at `n`."""
    from trainer.daemon.checkpointing import Applied, Checkpointer
    from trainer.daemon.hooks import Hooks
    from trainer.daemon.metrics import TrainerMetrics
    from trainer.daemon.settings import TrainSettings

    t0 = time.perf_counter()
    learner = filled(n, n, seed)
    if verbose:
        print(f"{n:,}: filled in {time.perf_counter() - t0:.1f} s", flush=True)
    work = traffic(n, 24, seed)
    for cols in work[:4]:  # warm the default step
        learner.learn(cols)
    out: dict[str, Any] = {"rows": n, "state_bytes": _state_bytes(learner)}
    if (len(learner.users), len(learner.items)) != (n, n):
        raise RuntimeError(
            f"filled {len(learner.users)} users and {len(learner.items)} items, not {n}"
        )
    settings = TrainSettings(
        source="file:///dev/null", checkpoint_dir=directory, model=learner.settings
    )
    metrics = TrainerMetrics()
    checkpointer = Checkpointer(settings, metrics, Hooks())
    checkpointer.attach(_Source())  # type: ignore[arg-type]
    applied = Applied(learner)
    stalls, writes, spent_runs = [], [], []
    try:
        for k in range(1 + repeats):
            applied.dirty = True
            spent: dict[str, float] = {}
            with _timed(spent):
                started = time.perf_counter()
                checkpointer.begin(applied)
                stall = metrics.registry.get_sample_value("recstream_checkpoint_stall_seconds")
                checkpointer.settle(applied, wait=True)
                total = time.perf_counter() - started
            assert stall is not None
            if k == 0:
                out["stall_cold_s"] = stall  # a new twin: its buffers are allocated here
                out["write_first_s"] = total - stall
            else:
                stalls.append(stall)
                writes.append(total - stall)
                spent_runs.append(spent)
        newest = checkpointer.store.latest()
        assert newest is not None
        out["checkpoint_bytes"] = _size(newest.path)
        out["files"] = {p.name: p.stat().st_size for p in newest.path.iterdir()}
        out["stall_s"] = statistics.median(stalls)
        out["write_s"] = statistics.median(writes)
        out["write_parts_s"] = {
            label: statistics.median(s.get(label, 0.0) for s in spent_runs)
            for label in spent_runs[0]
        }
        # training beside a write (the GIL and the cores it shares) vs training alone
        applied.dirty = True
        checkpointer.begin(applied)
        beside, k = 0, 0
        t1 = time.perf_counter()
        while checkpointer._inflight is not None and not checkpointer._inflight[0].done():
            learner.learn(work[k % len(work)])
            beside, k = beside + 1024, k + 1
        during = beside / (time.perf_counter() - t1)
        checkpointer.settle(applied, wait=True)
        t1 = time.perf_counter()
        for cols in work[: max(4, min(k, len(work)))]:
            learner.learn(cols)
        alone = 1024 * max(4, min(k, len(work))) / (time.perf_counter() - t1)
        out["train_during_write"] = during
        out["train_alone"] = alone
    finally:
        checkpointer.close()
    del learner, applied, checkpointer
    out["copy_gb_s"] = copy_gb_s(out["state_bytes"])
    out["disk_mb_s"] = disk_write_mb_s(directory, out["checkpoint_bytes"])
    restorer = Checkpointer(settings, TrainerMetrics(), Hooks())
    t0 = time.perf_counter()
    restored = restorer.restore()
    out["restore_s"] = time.perf_counter() - t0
    if len(restored.learner.items) != n:
        raise RuntimeError(f"the restored learner has {len(restored.learner.items)} items, not {n}")
    restorer.close()
    return out


LINEAR = ("stall_s", "write_s", "restore_s", "checkpoint_bytes", "state_bytes")


def estimate(measured: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """A size not run, on paper: each time and size a + b·N through the two largest runs."""
    a, b = sorted(measured, key=lambda r: r["rows"])[-2:]
    out: dict[str, Any] = {"rows": n, "estimated": True}
    for key in LINEAR:
        slope = (b[key] - a[key]) / (b["rows"] - a["rows"])
        out[key] = b[key] + slope * (n - b["rows"])
    for key in ("copy_gb_s", "disk_mb_s"):
        out[key] = b[key]
    return out


def rows_of(r: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(what, value, unit) of one size, for the table and the bench report."""
    mb = r["checkpoint_bytes"] / 1e6
    write_mb_s = mb / r["write_s"]
    rows = [
        ("checkpoint size", mb, "MB"),
        ("stall: Learner.copy_into a warmed twin (median)", r["stall_s"], "s"),
        (
            "stall floor: state bytes / memory copy speed",
            r["state_bytes"] / 1e9 / r["copy_gb_s"],
            "s",
        ),
        ("write on the checkpoint thread (median)", r["write_s"], "s"),
        ("write MB/s", write_mb_s, "MB/s"),
        ("disk sequential write + fsync, same run", r["disk_mb_s"], "MB/s"),
        ("write / disk speed (target >= 0.5)", write_mb_s / r["disk_mb_s"], "×"),
        ("restore at start (verify + load + Learner.from_state)", r["restore_s"], "s"),
    ]
    if not r.get("estimated"):
        rows[2:2] = [("stall, first checkpoint (a new twin)", r["stall_cold_s"], "s")]
        rows += [
            (
                "training events/s beside a write / alone",
                r["train_during_write"] / r["train_alone"],
                "×",
            )
        ]
    return rows


def table(results: list[dict[str, Any]]) -> str:
    sizes = [f"{r['rows']:,}" + (" (estimate)" if r.get("estimated") else "") for r in results]
    lines = ["| N users + N items | " + " | ".join(sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    by_size = [dict((w, (v, u)) for w, v, u in rows_of(r)) for r in results]
    for what in dict.fromkeys(w for r in results for w, _, _ in rows_of(r)):
        cells = []
        for figures in by_size:
            if what not in figures:
                cells.append("")
                continue
            v, unit = figures[what]
            cells.append(
                f"{v:.2f}×" if unit == "×" else f"{v:,.3f} {unit}" if v < 10 else f"{v:,.0f} {unit}"
            )
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parts(results: list[dict[str, Any]]) -> str:
    """Where the write's time went, per measured size."""
    lines = []
    for r in results:
        if r.get("estimated"):
            continue
        spent = r["write_parts_s"]
        rest = r["write_s"] - sum(spent.values())  # json, renames, the folder's fsync
        files = ", ".join(f"{k} {v / 1e6:,.1f} MB" for k, v in sorted(r["files"].items()))
        lines.append(
            f"{r['rows']:,}: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in spent.items())
            + f"; the rest {max(rest, 0.0):.3f} s. Files: {files}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.checkpoints", description=__doc__)
    p.add_argument("--rows", default="100000,1000000", help="N users + N items, comma-separated")
    p.add_argument("--estimate", default="10000000", help="sizes to estimate, not run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import torch

    from trainer.daemon.allocator import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as the trainer runs
    results = []
    for n in (int(x) for x in a.rows.split(",") if x):
        with tempfile.TemporaryDirectory(prefix="recstream-ckpt-", dir=a.dir) as d:
            results.append(measure(n, Path(d), a.repeats, a.seed, verbose=True))
        print(table(results[-1:]), flush=True)
    if len(results) >= 2:
        results += [estimate(results, int(x)) for x in a.estimate.split(",") if x]
    print(f"\nload average {os.getloadavg()[0]:.1f} (2 cores)\n")
    print(table(results))
    print()
    print(parts(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
