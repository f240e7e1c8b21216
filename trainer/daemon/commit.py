"""The commit sequence: how trained state becomes durable, always in this order.

1. **Flush the dead letters.** Records rejected up to the checkpoint's offsets must be in the
   dead-letter topic (or file) before offsets that skip them are made durable. Failure: raise;
   nothing below runs, the previous checkpoint stays the newest, the records are read again.
2. **Write the checkpoint** (state + the next offset of every partition it has read): the single
   commit point. Failure: raise; the temp directory is removed, the previous checkpoint stays.
3. **Commit the offsets to Kafka**, only now. They serve lag monitoring and a new group member;
   the checkpoint already holds them, so a refused commit (a rebalance) is logged, not raised.

A crash between any two steps replays from the newest complete checkpoint's offsets into the
state it holds: nothing lost, nothing counted twice. Steps 1-2 (`write`) may run on a thread
of their own while training goes on (the content is a snapshot); step 3 (`commit`) runs on the
thread that owns the consumer, after `write` returned. `CommitSequence` does nothing but this;
snapshots, scheduling, retries and alarms are `Checkpointer`'s (checkpointing.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream import EventSource, SourceError
from trainer.daemon.checkpoint import Checkpoint, CheckpointStore
from trainer.daemon.hooks import Hooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointContent:
    """What one checkpoint holds; `meta["offsets"]` are the offsets committed in step 3.
    `tensors` are arrays or tensors; `files` write the checkpoint's other files."""

    id: int
    tensors: dict[str, Any]
    meta: dict[str, Any]
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)

    @property
    def offsets(self) -> dict[str, int]:
        return dict(self.meta["offsets"])


class CommitSequence:
    def __init__(self, source: EventSource, store: CheckpointStore, hooks: Hooks) -> None:
        self.source = source
        self.store = store
        self.hooks = hooks

    def write(self, content: CheckpointContent) -> Checkpoint:
        """Steps 1-2; raises `SinkError` (step 1) or `CheckpointError` (step 2)."""
        self.source.flush()  # 1
        return self.store.save(  # 2
            content.tensors,
            content.meta,
            extra=content.files,
            ckpt_id=content.id,
            before_manifest=lambda: self.hooks.hit("checkpoint-write"),
        )

    def commit(self, ckpt: Checkpoint) -> None:
        """Step 3, after `write` returned `ckpt`: its offsets to Kafka."""
        self.hooks.hit("after-checkpoint")
        try:
            self.source.commit(dict(ckpt.meta["offsets"]))
        except SourceError as e:
            log.warning("offsets of checkpoint %d not committed: %s", ckpt.id, e)

    def run(self, content: CheckpointContent) -> Checkpoint:
        """Steps 1-3 on this thread."""
        ckpt = self.write(content)
        self.commit(ckpt)
        return ckpt
