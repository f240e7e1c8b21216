"""When and how the trainer checkpoints: resume at start, snapshot, write, retry, alarm.

`Applied` is what the daemon has applied: the learner and where each partition stands. A
`Checkpointer` restores it from the newest checkpoint and decides when the next checkpoint is
due (every `checkpoint_every_s`, or `checkpoint_every_events`). A checkpoint does not stop
training for its write: `begin` copies the learner into a twin kept for the purpose (memory
copies into reused buffers: the only stall) with the offsets of that moment, and the
checkpoint thread writes the twin (state, serving vectors) through the commit sequence's steps
1-2 while training goes on; `settle`, on the thread that owns the consumer, commits the
offsets (step 3) once the write returned. One write is in flight at a time. The checkpoints at
stop and on revocation are synchronous (`checkpoint`). A checkpoint that cannot be written
raises an alarm, is counted, and is retried with backoff (1, 2, 4 ... s, at most the interval);
training goes on, offsets stay uncommitted and the previous checkpoint stays the newest. The
twin costs one more copy of the model's memory.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream import EventSource, SinkError, SourceError
from trainer.core.learner import Learner
from trainer.core.state import jsonable
from trainer.daemon.checkpoint import SERVING, Checkpoint, CheckpointStore
from trainer.daemon.commit import CheckpointContent, CommitSequence
from trainer.daemon.groupckpt import state_for
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
        self.last = time.monotonic()  # the last checkpoint completed (or the start)
        self.next_at = self.last + settings.checkpoint_every_s
        self._sequence: CommitSequence | None = None
        self._twin: Learner | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._inflight: tuple[Future[Checkpoint], float, float] | None = None  # (write, t0, stall)
        self._next_id = 0

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
        # a group's checkpoint too (this trainer is a group of one)
        learner = Learner(self.s.model)
        learner.load_state(*state_for(ckpt, 0, 1, self.s.model))
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
        self.next_at = self.last + self.s.checkpoint_every_s

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    # ---- schedule --------------------------------------------------------------------------
    def due(self, applied: Applied, now: float) -> bool:
        """A checkpoint should begin now (and none is being written)."""
        if self._inflight is not None:
            return False
        n = self.s.checkpoint_every_events
        by_events = n is not None and applied.since_checkpoint >= n and self.failures == 0
        return now >= self.next_at or by_events

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
        """A checkpoint written and committed before returning (at stop, on revocation);
        False (and an alarm) if it failed. The learner must stand still meanwhile."""
        ok = self.settle(applied, wait=True)
        if self.begin(applied):
            ok = self.settle(applied, wait=True)
        return ok

    def begin(self, applied: Applied) -> bool:
        """Snapshot the state and start writing it; False if nothing changed since the last
        checkpoint or a write is in flight. The caller holds the learner still (it is the
        learner thread, or waited for it) for the snapshot only."""
        if self._inflight is not None or not applied.dirty or self._sequence is None:
            return False
        t0 = time.monotonic()
        if self._twin is None:
            self._twin = Learner(self.s.model)
        applied.learner.copy_into(self._twin)
        content = self._content(applied)  # offsets, counters and test files as of now
        applied.dirty, applied.since_checkpoint = False, 0
        stall = time.monotonic() - t0
        self.metrics.checkpoint_stall_seconds.set(stall)
        self._inflight = (self._thread.submit(self._write, content), t0, stall)
        self.next_at = time.monotonic() + self.delay()
        return True

    def settle(self, applied: Applied, wait: bool = False) -> bool:
        """After a write returned (or, with `wait`, once it has): commit its offsets and keep
        the books. False if it failed (its events wait for the next checkpoint)."""
        if self._inflight is None or self._sequence is None:
            return True
        write, started, stall = self._inflight
        if not wait and not write.done():
            return True
        self._inflight = None
        try:
            ckpt = write.result()
        except (CheckpointError, SinkError) as e:
            applied.dirty = True  # not durable: the next checkpoint carries these events
            self.failures += 1
            self.failing_since = self.failing_since or started
            self.metrics.checkpoint_failures.inc()
            self.next_at = time.monotonic() + self.delay()
            log.error(
                "ALARM checkpoint failed (%d in a row): %s. Training goes on; offsets are not "
                "committed; checkpoint %s stays the newest; retrying in %.0f s",
                self.failures,
                e,
                applied.checkpoint_id,
                self.delay(),
            )
            return False
        self._sequence.commit(ckpt)
        if self.failures:
            log.warning("checkpoint %d written after %d failures", ckpt.id, self.failures)
        self.failures, self.failing_since = 0, None
        applied.checkpoint_id = ckpt.id
        self.last = time.monotonic()
        self.metrics.checkpoint_id.set(ckpt.id)
        self.metrics.checkpoint_seconds.set(self.last - started)
        log.info(
            "checkpoint %d written in %.2f s, training stood still %.3f s (%d events applied)",
            ckpt.id,
            self.last - started,
            stall,
            ckpt.meta["events_applied"],
        )
        return True

    def _content(self, applied: Applied) -> CheckpointContent:
        """The checkpoint of this moment, its learner state still to be read from the twin."""
        cid = max(self.store.next_id(), self._next_id)
        self._next_id = cid + 1
        created_ms = time.time_ns() // 1_000_000
        settings: dict[str, Any] = asdict(self.s.model)
        settings["negatives"] = ",".join(str(n) for n in self.s.model.negatives)
        meta = {
            "created_ms": created_ms,
            "offsets": dict(applied.offsets),
            "identity": dict(applied.identity),
            "events_applied": applied.learner.events_applied,
            "events_rejected": applied.rejected,
            "source": self.s.source,
            "settings": settings,
        }
        return CheckpointContent(cid, {}, meta, self.hooks.checkpoint_files())

    def _write(self, content: CheckpointContent) -> Checkpoint:
        """On the checkpoint thread: the twin's state and serving vectors, steps 1-2."""
        twin, model = self._twin, self.s.model
        assert twin is not None and self._sequence is not None
        arrays, learner_meta = twin.state(copy=False)  # the twin stands still: no copies
        extra = {"model": f"two-tower dim={model.dim} layers={list(model.layers)}"}
        cid, created_ms = content.id, content.meta["created_ms"]

        def write_serving(path: Path) -> None:
            from store import save_snapshot

            save_snapshot(to_snapshot(twin, cid, created_ms, extra), path)

        full = CheckpointContent(
            cid,
            arrays,
            {**content.meta, "learner": jsonable(learner_meta)},
            {SERVING: write_serving, **content.files},
        )
        return self._sequence.write(full)
