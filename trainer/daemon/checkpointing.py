"""When and how the trainer checkpoints: resume at start, schedule, retry with backoff, alarm.

`Applied` is what the daemon has applied: the learner and where each partition stands. A
`Checkpointer` restores it from the newest checkpoint, decides when the next checkpoint is due
(every `checkpoint_every_s`, or `checkpoint_every_events`), builds the checkpoint's content and
runs the commit sequence (commit.py). A checkpoint that cannot be written raises an alarm, is
counted, and is retried with backoff (1, 2, 4 ... s, at most the interval); training goes on,
offsets stay uncommitted and the previous checkpoint stays the newest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream import EventSource, SinkError, SourceError
from trainer.core.learner import Learner
from trainer.daemon.checkpoint import SERVING, CheckpointStore
from trainer.daemon.commit import CheckpointContent, CommitSequence
from trainer.daemon.hooks import Hooks
from trainer.daemon.metrics import TrainerMetrics
from trainer.daemon.serving import to_snapshot
from trainer.daemon.settings import TrainSettings
from trainer.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

_RETRY_MAX_S = 60.0


@dataclass
class Applied:
    """The learner and the positions its state has read up to. Touched only by the learner
    thread, or by the poll thread after it waited for the learner thread."""

    learner: Learner
    offsets: dict[str, int] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)  # what the offsets refer to
    rejected: int = 0
    checkpoint_id: int | None = None
    dirty: bool = False  # anything applied since the last checkpoint
    since_checkpoint: int = 0  # events applied since the last checkpoint

    def check_identity(self, now: dict[str, str]) -> None:
        """Refuse a source whose log is not the one the saved offsets point into."""
        for key, was in self.identity.items():
            if key in now and now[key] != was:
                raise SourceError(
                    f"{key} is not the log this checkpoint read: its id was {was}, now {now[key]} "
                    "(the topic was deleted and re-created, e.g. by a broker restart). The saved "
                    "offsets do not apply to it. Start a fresh --checkpoint-dir, or pass "
                    "--from-time to backfill into a new one."
                )
        self.identity.update(now)


class Checkpointer:
    def __init__(self, settings: TrainSettings, metrics: TrainerMetrics, hooks: Hooks) -> None:
        self.s = settings
        self.store = CheckpointStore(settings.checkpoint_dir)
        self.metrics = metrics
        self.hooks = hooks
        self.failures = 0
        self.failing_since: float | None = None
        self.last = time.monotonic()
        self._sequence: CommitSequence | None = None

    # ---- start -----------------------------------------------------------------------------
    def restore(self) -> Applied:
        """The newest checkpoint's state, or a fresh learner."""
        ckpt = self.store.latest()
        if ckpt is None:
            return Applied(Learner(self.s.model))
        if self.s.from_time_ms is not None:
            raise ConfigError(
                f"--from-time starts a fresh model, but {self.s.checkpoint_dir} already holds "
                f"checkpoint {ckpt.id}. Use a new --checkpoint-dir (and --namespace), "
                "or drop --from-time to resume."
            )
        mismatch = self.s.model.shape_mismatch(ckpt.meta["settings"])
        if mismatch:
            raise ConfigError(
                f"{mismatch} (in {self.s.checkpoint_dir}); use the same value or a new "
                "--checkpoint-dir"
            )
        learner = Learner.from_state(self.s.model, ckpt.tensors(), ckpt.meta["learner"])
        applied = Applied(
            learner,
            offsets=dict(ckpt.meta["offsets"]),
            identity=dict(ckpt.meta["identity"]),
            rejected=int(ckpt.meta["events_rejected"]),
            checkpoint_id=ckpt.id,
        )
        self.metrics.checkpoint_id.set(ckpt.id)
        self.metrics.applied.set(learner.events_applied)
        self.hooks.restored(ckpt)
        log.info(
            "resumed from checkpoint %d: %d events applied, offsets %s",
            ckpt.id,
            learner.events_applied,
            applied.offsets,
        )
        return applied

    def attach(self, source: EventSource) -> None:
        self._sequence = CommitSequence(source, self.store, self.hooks)
        self.last = time.monotonic()

    # ---- schedule --------------------------------------------------------------------------
    def events_due(self, applied: Applied) -> bool:
        n = self.s.checkpoint_every_events
        return n is not None and applied.since_checkpoint >= n and self.failures == 0

    def delay(self) -> float:
        """Seconds to the next checkpoint: the interval, or a backoff after failures."""
        if self.failures == 0:
            return self.s.checkpoint_every_s
        backoff = 2.0 ** min(self.failures - 1, 6)
        return min(self.s.checkpoint_every_s, backoff, _RETRY_MAX_S)

    def failing_s(self) -> float:
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    # ---- the checkpoint --------------------------------------------------------------------
    def checkpoint(self, applied: Applied) -> bool:
        """Run the commit sequence if anything changed; False (and an alarm) if it failed.
        The caller holds the learner still (it is the learner thread, or waited for it)."""
        if not applied.dirty or self._sequence is None:
            return True
        started = time.monotonic()
        try:
            ckpt = self._sequence.run(self._content(applied))
        except (CheckpointError, SinkError) as e:
            self.failures += 1
            self.failing_since = self.failing_since or started
            self.metrics.checkpoint_failures.inc()
            log.error(
                "ALARM checkpoint failed (%d in a row): %s. Training goes on; offsets are not "
                "committed; checkpoint %s stays the newest; retrying in %.0f s",
                self.failures,
                e,
                applied.checkpoint_id,
                self.delay(),
            )
            return False
        if self.failures:
            log.warning("checkpoint %d written after %d failures", ckpt.id, self.failures)
        self.failures, self.failing_since = 0, None
        applied.checkpoint_id, applied.since_checkpoint, applied.dirty = ckpt.id, 0, False
        self.last = time.monotonic()
        self.metrics.checkpoint_id.set(ckpt.id)
        self.metrics.checkpoint_seconds.set(self.last - started)
        log.info(
            "checkpoint %d written in %.2f s (%d events applied)",
            ckpt.id,
            self.last - started,
            applied.learner.events_applied,
        )
        return True

    def _content(self, applied: Applied) -> CheckpointContent:
        learner, model = applied.learner, self.s.model
        tensors, learner_meta = learner.state()
        cid = self.store.next_id()
        created_ms = time.time_ns() // 1_000_000
        extra = {"model": f"two-tower dim={model.dim} layers={list(model.layers)}"}

        def write_serving(path: Path) -> None:
            from store import save_snapshot

            save_snapshot(to_snapshot(learner, cid, created_ms, extra), path)

        settings: dict[str, Any] = asdict(model)
        settings["negatives"] = ",".join(str(n) for n in model.negatives)
        meta = {
            "created_ms": created_ms,
            "offsets": dict(applied.offsets),
            "identity": dict(applied.identity),
            "events_applied": learner.events_applied,
            "events_rejected": applied.rejected,
            "source": self.s.source,
            "settings": settings,
            "learner": learner_meta,
        }
        return CheckpointContent(
            cid, tensors, meta, {SERVING: write_serving, **self.hooks.checkpoint_files()}
        )
