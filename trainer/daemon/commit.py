"""The commit sequence: how trained state becomes durable, always in this order.

1. **Flush the dead letters.** Records rejected since the last checkpoint must be in the
   dead-letter topic (or file) before offsets that skip them are made durable. Failure: raise;
   nothing below runs, the previous checkpoint stays the newest, the records are read again.
2. **Write the checkpoint** (state + the next offset of every partition it has read): the single
   commit point. Failure: raise; the temp directory is removed, the previous checkpoint stays.
3. **Commit the offsets to Kafka**, only now. They serve lag monitoring and a new group member;
   the checkpoint already holds them, so a refused commit (a rebalance) is logged, not raised.

A crash between any two steps replays from the newest complete checkpoint's offsets into the
state it holds: nothing lost, nothing counted twice. `CommitSequence` does nothing but this;
scheduling, retries and alarms are `Checkpointer`'s (checkpointing.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stream import EventSource, SourceError
from trainer.daemon.checkpoint import Checkpoint, CheckpointStore
from trainer.daemon.hooks import Hooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointContent:
    """What one checkpoint holds; `meta["offsets"]` are the offsets committed in step 3."""

    id: int
    tensors: dict[str, torch.Tensor]
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

    def run(self, content: CheckpointContent) -> Checkpoint:
        """Steps 1-3; raises `SinkError` (step 1) or `CheckpointError` (step 2)."""
        self.source.flush()  # 1
        ckpt = self.store.save(  # 2
            content.tensors,
            content.meta,
            extra=content.files,
            ckpt_id=content.id,
            before_manifest=lambda: self.hooks.hit("checkpoint-write"),
        )
        self.hooks.hit("after-checkpoint")
        try:  # 3
            self.source.commit(content.offsets)
        except SourceError as e:
            log.warning("offsets of checkpoint %d not committed: %s", ckpt.id, e)
        return ckpt
