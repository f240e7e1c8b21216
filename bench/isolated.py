"""Run a benchmark function in a fresh process: its own peak memory, its own thread settings.

Two torch threads need OMP_PROC_BIND=true OMP_WAIT_POLICY=ACTIVE set before OpenMP starts
(DESIGN.md: without them steps stall 10-100x on this VM), and peak memory (VmHWM) only means
something for a process that did one thing. Results come back through multiprocessing's pipe
(our own process, our own objects).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from trainer.daemon.allocator import keep_freed_memory

T = TypeVar("T")


def thread_env(threads: int) -> dict[str, str]:
    env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
    if threads > 1:
        env |= {"OMP_PROC_BIND": "true", "OMP_WAIT_POLICY": "ACTIVE"}
    return env


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _enter(threads: int, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    import torch

    torch.set_num_threads(threads)
    keep_freed_memory()  # as the trainer runs
    return fn(*args)


def run_isolated(fn: Callable[..., T], *args: Any, threads: int = 1) -> T:
    """`fn(*args)` in a new process with `threads` torch threads (and the env they need)."""
    saved = {k: os.environ.get(k) for k in thread_env(threads)}
    os.environ.update(thread_env(threads))
    try:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            return pool.submit(_enter, threads, fn, args).result()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
