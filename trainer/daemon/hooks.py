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

    def restored(self, checkpoint: Any) -> None:
        """The daemon resumed from `checkpoint` (a `trainer.daemon.checkpoint.Checkpoint`)."""


def hooks_for(test_mode: bool) -> Hooks:
    """The test hooks (armed from RECSTREAM_FAULT) in test mode, else no-ops."""
    if not test_mode:
        return Hooks()
    from trainer.testing import TestHooks

    return TestHooks()
