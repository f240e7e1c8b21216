"""Test mode (`--test-mode`): fault points and the apply-count oracle, behind the daemon's hooks.

Loaded only when a command runs with `--test-mode` (`trainer.daemon.hooks.hooks_for`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from trainer.daemon.hooks import Hooks
from trainer.testing import faults
from trainer.testing.oracle import ORACLE, ApplyCounts


class TestHooks(Hooks):
    """Arms the fault points of RECSTREAM_FAULT and keeps exact apply counts per event_id in
    every checkpoint (so they roll back with the model on a crash)."""

    __test__ = False  # not a pytest test class

    def __init__(self, arm: bool = True) -> None:
        faults.arm() if arm else faults.disarm()
        self.oracle = ApplyCounts()

    def hit(self, point: str) -> None:
        faults.hit(point)

    def applied(self, event_ids: Iterable[str | None]) -> None:
        self.oracle.update(event_ids)

    def checkpoint_files(self) -> dict[str, Callable[[Path], None]]:
        return {ORACLE: self.oracle.writer()}

    def restored(self, checkpoint: Any, rank: int = 0, world: int = 1) -> None:
        """Rank 0 carries the whole group's counts on (their sum is what was applied)."""
        if rank != 0:
            return
        files = sorted(checkpoint.path.glob(f"part-*.{ORACLE}"))
        if not files:
            self.oracle = ApplyCounts.load(checkpoint)
            return
        self.oracle = ApplyCounts()
        for path in files:
            self.oracle.counts.update(json.loads(path.read_text()))


__all__ = ["TestHooks", "faults"]
