"""The points where test mode reaches into the daemon; outside test mode they do nothing.

The fault tests kill or pause a process at named points and check every event was applied
exactly once (`trainer.testing`); the daemon calls these hooks and never imports that package
unless `--test-mode` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class Hooks:
    """No-op hooks: what a production daemon runs."""

    def hit(self, point: str) -> None:
        """A named fault point (`trainer.testing.faults.POINTS`)."""

    def applied(self, event_ids: Iterable[str | None]) -> None:
        """Events that were just learned."""

    def checkpoint_files(self) -> dict[str, Callable[[Path], None]]:
        """Extra files for the checkpoint being written: name -> writer."""
        return {}

    def restored(self, checkpoint: Any, rank: int = 0, world: int = 1) -> None:
        """The daemon (rank `rank` of a group of `world`) resumed from `checkpoint` (a
        `trainer.daemon.checkpoint.Checkpoint`, written by one trainer or by a group)."""


def hooks_for(test_mode: bool) -> Hooks:
    """The test hooks in test mode, else no-ops. Faults (RECSTREAM_FAULT) are armed only on the
    rank of a group named by RECSTREAM_FAULT_RANK (if set), and never after torchrun restarted
    the group (the fault already happened)."""
    if not test_mode:
        return Hooks()
    import os

    from trainer.testing import TestHooks

    rank = os.environ.get("RECSTREAM_FAULT_RANK")
    restarted = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
    armed = not restarted and (rank is None or rank == os.environ.get("RANK", "0"))
    return TestHooks(arm=armed)
