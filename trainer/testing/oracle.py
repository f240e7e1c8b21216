"""Test mode's oracle: exact apply counts per `event_id`, kept *in* the checkpoint.

Counts kept outside the checkpoint would lie after a crash: the model rolls back to its last
checkpoint, and so must the counts of what it applied. The fault tests compare these counts with
the topic: every record applied exactly once. Events without an `event_id` count under "".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from trainer.daemon.checkpoint import Checkpoint
from trainer.errors import CheckpointError

ORACLE = "oracle.json"  # the file in a checkpoint directory


class ApplyCounts:
    def __init__(self, counts: Counter[str] | None = None) -> None:
        self.counts: Counter[str] = counts if counts is not None else Counter()

    def update(self, event_ids: Iterable[str | None]) -> None:
        self.counts.update(e or "" for e in event_ids)

    def writer(self) -> Callable[[Path], None]:
        """A checkpoint file writer holding the counts as they are now."""
        frozen = json.dumps(dict(self.counts))

        def write(path: Path) -> None:
            path.write_text(frozen)

        return write

    @classmethod
    def load(cls, ckpt: Checkpoint) -> ApplyCounts:
        try:
            return cls(Counter(json.loads((ckpt.path / ORACLE).read_text())))
        except FileNotFoundError:
            if ckpt.meta["events_applied"]:
                raise CheckpointError(
                    f"--test-mode: checkpoint {ckpt.path} has no {ORACLE}: it was written "
                    "without --test-mode, so its apply counts are unknown; use a fresh "
                    "--checkpoint-dir"
                ) from None
            return cls()
