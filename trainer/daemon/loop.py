"""The trainer daemon: source → learner → checkpoint → offsets, in that order.

Per batch: poll, learn. Per checkpoint (every `checkpoint_every_s` or `checkpoint_every_events`,
on revocation, on stop): the commit sequence (commit.py) — flush dead letters, write the
checkpoint (state + next offsets), then commit the offsets to Kafka. A crash anywhere replays
from the last checkpoint's offsets into the state that checkpoint holds: nothing lost, nothing
counted twice. One trainer per checkpoint directory is active (a lock); others wait as standbys.
SIGTERM/SIGINT only set a flag. The writer runs as its own process.

Threads, and what each may touch:
- the **poll thread** (the caller of `run`) is the only one that polls the consumer; it decodes,
  hands each batch to the learner thread and fetches the next one meanwhile; periodic and final
  checkpoints run here, after it waited for the learner thread;
- the **learner thread** applies batches to the model and to the offsets (`Applied`); the
  model and the offsets are touched only by it, or by the poll thread after waiting for it;
- on a **revocation**, kafka-python calls the source's rebalance listener while the poll thread
  is blocked inside the consumer's poll; the listener hands the revoked partitions' pending
  batch to the learner thread, which learns it and runs the same commit sequence, and waits for
  it, so the offsets are committed before the partitions move (and the blocked poll thread
  cannot race the consumer meanwhile);
- the watchdog, the metrics server and the progress bar only read what the loop publishes.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from tqdm import tqdm

from stream import Batch, EventSource
from trainer.core.evaluation import warm_up
from trainer.core.learner import EventColumns, Learner
from trainer.daemon.allocator import keep_freed_memory
from trainer.daemon.checkpointing import Applied, Checkpointer
from trainer.daemon.hooks import hooks_for
from trainer.daemon.lock import DirectoryLock
from trainer.daemon.metrics import MetricsServer, TotalLag, TrainerMetrics
from trainer.daemon.publish import read_published
from trainer.daemon.settings import TrainSettings
from trainer.daemon.sources import open_source
from trainer.daemon.stopping import StopOnSignal
from trainer.daemon.watchdog import Progress, Watchdog, poll_gap_alarm
from trainer.daemon.writer_process import WriterProcess

log = logging.getLogger(__name__)


class Trainer(StopOnSignal):
    def __init__(self, settings: TrainSettings) -> None:
        self.s = settings
        self.lock = DirectoryLock(settings.checkpoint_dir)
        self.hooks = hooks_for(settings.test_mode)
        self.metrics = TrainerMetrics()
        self.checkpointer = Checkpointer(settings, self.metrics, self.hooks)
        self.applied: Applied | None = None
        self.source: EventSource | None = None
        self.progress = Progress()
        self.watchdog = Watchdog(
            self.progress, settings.stall_after_s, on_change=self.metrics.stalled.set
        )
        self.standby = False
        self.shutdown_s: float | None = None
        self.events_this_run = 0
        self.elapsed_s = 1e-9
        self._figures_at = 0.0
        self._writer: WriterProcess | None = None
        self._lag = TotalLag(self.metrics)  # the total lag, from the watchdog's end offsets
        self._server: MetricsServer | None = None
        # one learner thread: a batch is learned while the next is fetched (the GIL is
        # released in torch's kernels, so fetching, decoding and learning overlap)
        self._learner_thread = ThreadPoolExecutor(1, thread_name_prefix="learner")
        self._learning: Future[float | None] | None = None
        m = self.metrics
        m.checkpoint_age.set_function(lambda: time.monotonic() - self.checkpointer.last)
        m.follow_published(lambda: read_published(settings.checkpoint_dir, settings.namespace))

    @property
    def rejected(self) -> int:
        return self.applied.rejected if self.applied else 0

    @property
    def checkpoint_id(self) -> int | None:
        return self.applied.checkpoint_id if self.applied else None

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> Learner | None:
        """Train until stopped; None if stopped while still a standby."""
        warm_up()  # river's import (seconds) overlaps the restore and the group join
        if self.s.metrics_port is not None:
            self._server = MetricsServer(
                self.metrics.registry, self.health, self.s.metrics_host, self.s.metrics_port
            )
        try:
            if not self._acquire_lock():
                log.info("stopped while standby")
                return None
            torch.set_num_threads(self.s.threads)
            keep_freed_memory()
            self.applied = applied = self.checkpointer.restore()
            self.source = source = self._open_source(applied)
            try:
                applied.check_identity(source.identity())
                self.checkpointer.attach(source)
                if self.s.redis:
                    self._writer = WriterProcess(
                        self.s.checkpoint_dir, self.s.namespace, self.s.redis, self.s.redis_tls
                    )
                self.watchdog.start()
                self._loop(source, applied)
                self.progress.turn("stopping")
                if not self.checkpointer.checkpoint(applied) and self.stop_requested:
                    log.error(
                        "the final checkpoint failed: the events since checkpoint %s will be "
                        "read again on restart (nothing is lost)",
                        applied.checkpoint_id,
                    )
            finally:
                self._learner_thread.shutdown(wait=True, cancel_futures=True)
                self.checkpointer.close()
                self.watchdog.close()
                source.close()
                self._stop_writer()
        finally:
            self.lock.release()
            if self._server is not None:
                self._server.close()
            if self.stop_requested_at is not None:
                self.shutdown_s = time.monotonic() - self.stop_requested_at
                log.info("stopped %.2f s after the stop signal", self.shutdown_s)
        return self.applied.learner if self.applied else None

    def _acquire_lock(self) -> bool:
        if self.lock.try_acquire():
            return True
        self.standby = True
        self.metrics.standby.set(1)
        log.warning(
            "standby: %s is in use by %s; waiting to take over",
            self.s.checkpoint_dir,
            self.lock.holder(),
        )
        waited = time.monotonic()
        while not self.stop_requested:
            time.sleep(self.s.standby_poll_s)
            self.progress.turn("standby")
            if self.lock.try_acquire():
                log.warning("taking over after %.1f s as standby", time.monotonic() - waited)
                self.standby = False
                self.metrics.standby.set(0)
                return True
        return False

    def _open_source(self, applied: Applied) -> EventSource:
        opened = open_source(
            self.s,
            applied.offsets,
            self._on_revoke,
            resuming=applied.checkpoint_id is not None,
            should_stop=lambda: self.stop_requested,  # SIGTERM ends a wait for the broker
        )
        applied.offsets = opened.offsets
        if opened.end_offsets is not None:
            self.watchdog = Watchdog(
                self.progress,
                self.s.stall_after_s,
                end_offsets=opened.end_offsets,
                on_change=self.metrics.stalled.set,
                on_ends=self._total_lag,
            )
        return opened.source

    def _total_lag(self, ends: dict[str, int]) -> None:
        """On the watchdog's thread: the total lag from the end offsets it read, or unknown
        from losing every partition until the rejoin (never a stale figure)."""
        source, applied = self.source, self.applied
        try:
            ready = source is not None and source.ready()
            assigned = getattr(source, "assigned", None)
            owned = set(assigned()) if ready and callable(assigned) else None
            positions = dict(applied.offsets) if applied is not None else {}
        except RuntimeError:  # the poll thread changed the assignment meanwhile: next time
            return
        self._lag.update(ends, ready, owned, positions)

    # ---- the loop (poll thread) ------------------------------------------------------------
    def _loop(self, source: EventSource, applied: Applied) -> None:
        learner = applied.learner
        last_event = last_log = time.monotonic()
        bar = tqdm(
            desc="train", unit="ev", disable=not self.s.progress, initial=learner.events_applied
        )
        started, applied0 = time.monotonic(), learner.events_applied
        loss = 0.0
        while not self.stop_requested:
            self.progress.turn("polling")
            batch = source.poll(self.s.batch_size, self.s.poll_timeout_s)
            polled = time.monotonic()
            # learn this batch on the learner thread while the next one is fetched and decoded
            previous = self._learn_in_background(batch)
            now = time.monotonic()
            if batch.count or batch.rejected or not source.ready():
                last_event = now
                loss = previous if previous is not None else loss
                bar.update(batch.count)
                bar.set_postfix(loss=f"{loss:.3f}", rejected=applied.rejected, refresh=False)
            elif (
                self.s.stop_when_idle_s is not None and now - last_event >= self.s.stop_when_idle_s
            ):
                log.info("no event for %.1f s: stopping", now - last_event)
                break
            self.checkpointer.settle(applied)  # a write that ended: commit its offsets
            if self.checkpointer.due(applied, now):
                self.progress.turn("checkpointing")
                self._wait_learning()
                self.checkpointer.begin(applied)  # a snapshot; the write goes on beside us
            self._observe(source, polled)
            if now - last_log >= self.s.log_every_s:
                self._log_figures(learner, source, loss, (now - started), applied0)
                last_log = now
        loss = self._wait_learning() or loss
        bar.set_postfix(loss=f"{loss:.3f}", rejected=applied.rejected, refresh=True)
        bar.close()
        self.elapsed_s = max(last_event - started, 1e-9)  # the idle tail is not training time
        self.events_this_run = learner.events_applied - applied0

    def _log_figures(
        self, learner: Learner, source: EventSource, loss: float, elapsed: float, applied0: int
    ) -> None:
        q = learner.figures()  # progressive: scored before learning
        log.info(
            "applied=%d rejected=%d loss=%.4f rate=%.0f ev/s lag=%s "
            "recall@10=%.4f (rolling %.4f) recall@100=%.4f (rolling %.4f) evaluated=%d",
            learner.events_applied,
            self.rejected,
            loss,
            (learner.events_applied - applied0) / max(elapsed, 1e-9),
            source.lag(),
            q["recall@10"],
            q["recall@10_rolling"],
            q["recall@100"],
            q["recall@100_rolling"],
            q["evaluated"],
        )

    def _observe(self, source: EventSource, polled: float) -> None:
        """After a turn of the loop: poll-interval alarm, lag and assignment gauges."""
        gap = time.monotonic() - polled
        self.metrics.poll_gap.set(gap)
        if poll_gap_alarm(gap, self.s.max_poll_interval_ms):
            self.metrics.poll_interval_exceeded.inc()
        lag = source.lag()
        self.metrics.set_lag(lag)
        if not self.watchdog.reads_ends:  # no client of its own (a file): the source's figure
            self.metrics.set_total_lag(sum(lag.values()) if lag else None)
        assigned = getattr(source, "assigned", None)  # Kafka only; a file is one partition
        self.metrics.partitions.set(len(assigned()) if callable(assigned) else 1)

    def _learn_in_background(self, batch: Batch) -> float | None:
        """Hand `batch` to the learner thread, after the previous one is learned; returns the
        previous batch's loss."""
        previous = self._wait_learning()
        if batch.count or batch.rejected or batch.offsets:
            self.progress.turn("training")
            self._learning = self._learner_thread.submit(self._apply, batch)
        return previous

    def _wait_learning(self) -> float | None:
        """Wait for the batch being learned (re-raising its error); its loss, if any."""
        pending, self._learning = self._learning, None
        return pending.result() if pending is not None else None

    # ---- the learner thread ----------------------------------------------------------------
    def _apply(self, batch: Batch) -> float | None:
        applied = self.applied
        assert applied is not None
        loss = None
        n = batch.count
        if n:
            self.hooks.hit("slow-step")
            cols = batch.as_columns()
            stats = applied.learner.learn(
                EventColumns(cols.users, cols.items, cols.ts, cols.weights, cols.contexts)
            )
            loss = stats.loss
            self.hooks.applied(cols.event_ids or [None] * n)
            applied.since_checkpoint += n
            self.metrics.trained.inc(n)
            self.metrics.applied.set(applied.learner.events_applied)
            self.metrics.loss.set(loss)
            self._progressive(applied.learner)
            self.hooks.hit("after-step")
        moved = any(applied.offsets.get(k) != v for k, v in batch.offsets.items())
        if moved:
            self.progress.advanced()
        if n or batch.rejected or moved:
            applied.offsets.update(batch.offsets)
            applied.rejected += batch.rejected
            self.metrics.consumed.inc(n + batch.rejected)
            self.metrics.rejected.inc(batch.rejected)
            applied.dirty = True
        return loss

    def _progressive(self, learner: Learner) -> None:
        """Progressive recall for the metrics, at most once a second."""
        now = time.monotonic()
        if now - self._figures_at < 1.0:
            return
        self._figures_at = now
        try:
            self.metrics.set_figures(learner.figures())
        except Exception:  # a figure that cannot be computed is no reason to stop training
            return

    def _on_revoke(self, pending: Batch) -> None:
        """Partitions are going (the poll thread is blocked in the consumer's poll): the learner
        thread learns what was fetched from them, then checkpoints and commits them."""
        self._learner_thread.submit(self._revoked, pending).result()

    def _revoked(self, pending: Batch) -> None:
        assert self.applied is not None
        self._apply(pending)
        self.checkpointer.checkpoint(self.applied)

    # ---- health and the writer -------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy unless training stalled or checkpoints kept failing for `stall_after_s`."""
        failing_s = self.checkpointer.failing_s()
        checks: dict[str, Any] = {
            "standby": self.standby,
            "stalled": self.watchdog.stalled,
            "checkpoint_failures": self.checkpointer.failures,
            "checkpoint_failing_s": round(failing_s, 1),
            "checkpoint": self.checkpoint_id,
            "phase": self.progress.phase,
        }
        if self.watchdog.stalled:
            checks["reason"] = self.watchdog.reason
        ok = not self.watchdog.stalled and failing_s <= self.s.stall_after_s
        return ok, checks

    def _stop_writer(self) -> None:
        if self._writer is None:
            return
        spent = 0.0 if self.stop_requested_at is None else time.monotonic() - self.stop_requested_at
        self._writer.stop(wait_s=max(5.0, self.s.shutdown_grace_s - spent - 1.0))
        self._writer = None
