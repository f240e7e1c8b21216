"""The trainer's I/O shell: source → learner → checkpoint → offsets, in that order.

Per batch: poll, learn. Per checkpoint (every `checkpoint_every_s` or `checkpoint_every_events`,
on revocation, on stop): flush dead letters, write the checkpoint (state + next offsets), then
commit the offsets to Kafka. A crash anywhere replays from the last checkpoint's offsets into the
state that checkpoint holds: nothing lost, nothing counted twice. A checkpoint that cannot be
written raises an alarm and is retried; training goes on, offsets stay uncommitted, the previous
checkpoint stays. One trainer per checkpoint directory is active (a lock); others wait as
standbys. SIGTERM/SIGINT only set a flag. The writer runs as its own process.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from stream import Batch, EventSource, SinkError, SourceError
from trainer.core.learner import EventColumns, Learner
from trainer.daemon.allocator import keep_freed_memory
from trainer.daemon.checkpoint import SERVING, Checkpoint, CheckpointStore
from trainer.daemon.lock import DirectoryLock
from trainer.daemon.metrics import MetricsServer, TrainerMetrics
from trainer.daemon.publish import read_published
from trainer.daemon.serving import to_snapshot
from trainer.daemon.settings import TrainSettings
from trainer.daemon.sources import open_source
from trainer.daemon.watchdog import Progress, Watchdog
from trainer.daemon.writer_process import WriterProcess
from trainer.errors import CheckpointError, ConfigError
from trainer.testing import faults
from trainer.testing.oracle import ORACLE, ApplyCounts

log = logging.getLogger(__name__)

_RETRY_MAX_S = 60.0


class Trainer:
    def __init__(self, settings: TrainSettings) -> None:
        self.s = settings
        self.store = CheckpointStore(settings.checkpoint_dir)
        self.lock = DirectoryLock(settings.checkpoint_dir)
        self.stop_requested = False
        self.stop_requested_at: float | None = None
        self.learner: Learner
        self.offsets: dict[str, int] = {}
        self.identity: dict[str, str] = {}
        self.rejected = 0
        self.source: EventSource | None = None
        self.oracle = ApplyCounts() if settings.test_mode else None
        self.metrics = TrainerMetrics()
        self.progress = Progress()
        self.watchdog = Watchdog(
            self.progress, settings.stall_after_s, on_change=self.metrics.stalled.set
        )
        self.standby = False
        self.shutdown_s: float | None = None
        self.events_this_run = 0
        self.elapsed_s = 1e-9
        self.checkpoint_id: int | None = None
        self._dirty = False
        self._since_ckpt = 0
        self._last_ckpt = time.monotonic()
        self._ckpt_failures = 0
        self._failing_since: float | None = None
        self._figures_at = 0.0
        self._writer: WriterProcess | None = None
        self._server: MetricsServer | None = None
        # one learner thread: a batch is learned while the next is fetched (the GIL is
        # released in torch's kernels, so fetching, decoding and learning overlap)
        self._learner_thread = ThreadPoolExecutor(1, thread_name_prefix="learner")
        self._learning: Future[float | None] | None = None
        m = self.metrics
        m.checkpoint_age.set_function(lambda: time.monotonic() - self._last_ckpt)
        m.follow_published(lambda: read_published(settings.checkpoint_dir, settings.namespace))

    # ---- lifecycle -------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        """Signal-safe: only sets a flag; the loop finishes its batch, checkpoints and exits."""
        if not self.stop_requested:
            self.stop_requested_at = time.monotonic()
        self.stop_requested = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> Learner | None:
        """Train until stopped; None if stopped while still a standby."""
        if self.s.test_mode:
            faults.arm()
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
            self._restore()
            self.source = self._open_source()
            try:
                self._check_identity(self.source)
                if self.s.redis:
                    self._start_writer()
                self.watchdog.start()
                self._loop(self.source)
                self.progress.turn("stopping")
                if not self.checkpoint() and self.stop_requested:
                    log.error(
                        "the final checkpoint failed: the events since checkpoint %s will be "
                        "read again on restart (nothing is lost)",
                        self.checkpoint_id,
                    )
            finally:
                self._learner_thread.shutdown(wait=True, cancel_futures=True)
                self.watchdog.close()
                self.source.close()
                self._stop_writer()
        finally:
            self.lock.release()
            if self._server is not None:
                self._server.close()
            if self.stop_requested_at is not None:
                self.shutdown_s = time.monotonic() - self.stop_requested_at
                log.info("stopped %.2f s after the stop signal", self.shutdown_s)
        return self.learner

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

    def _restore(self) -> None:
        ckpt = self.store.latest()
        if ckpt is None:
            self.learner = Learner(self.s.model)
            return
        if self.s.from_time_ms is not None:
            raise ConfigError(
                f"--from-time starts a fresh model, but {self.s.checkpoint_dir} already holds "
                f"checkpoint {ckpt.id}. Use a new --checkpoint-dir (and --namespace), "
                "or drop --from-time to resume."
            )
        saved = ckpt.meta["settings"]
        mismatch = self.s.model.shape_mismatch(saved)
        if mismatch:
            raise ConfigError(
                f"{mismatch} (in {self.s.checkpoint_dir}); use the same value or a new "
                "--checkpoint-dir"
            )
        self.learner = Learner.from_state(self.s.model, ckpt.tensors(), ckpt.meta["learner"])
        self.offsets = dict(ckpt.meta["offsets"])
        self.identity = dict(ckpt.meta["identity"])
        self.rejected = int(ckpt.meta["events_rejected"])
        self.checkpoint_id = ckpt.id
        self.metrics.checkpoint_id.set(ckpt.id)
        self.metrics.applied.set(self.learner.events_applied)
        if self.oracle is not None:
            self.oracle = ApplyCounts.load(ckpt)
        log.info(
            "resumed from checkpoint %d: %d events applied, offsets %s",
            ckpt.id,
            self.learner.events_applied,
            self.offsets,
        )

    def _open_source(self) -> EventSource:
        opened = open_source(
            self.s,
            self.offsets,
            self._on_revoke,
            resuming=self.checkpoint_id is not None,
        )
        self.offsets = opened.offsets
        if opened.end_offsets is not None:
            self.watchdog = Watchdog(
                self.progress,
                self.s.stall_after_s,
                end_offsets=opened.end_offsets,
                on_change=self.metrics.stalled.set,
            )
        return opened.source

    def _check_identity(self, source: EventSource) -> None:
        now = source.identity()
        for key, was in self.identity.items():
            if key in now and now[key] != was:
                raise SourceError(
                    f"{key} is not the log this checkpoint read: its id was {was}, now {now[key]} "
                    "(the topic was deleted and re-created, e.g. by a broker restart). The saved "
                    "offsets do not apply to it. Start a fresh --checkpoint-dir, or pass "
                    "--from-time to backfill into a new one."
                )
        self.identity.update(now)

    # ---- the loop --------------------------------------------------------------------------
    def _loop(self, source: EventSource) -> None:
        last_event = last_log = time.monotonic()
        bar = tqdm(
            desc="train",
            unit="ev",
            disable=not self.s.progress,
            initial=self.learner.events_applied,
        )
        started, applied0 = time.monotonic(), self.learner.events_applied
        self._last_ckpt = started
        next_ckpt = started + self.s.checkpoint_every_s
        max_gap_s = self.s.max_poll_interval_ms / 1000
        loss = 0.0
        while not self.stop_requested:
            self.progress.turn("polling")
            batch = source.poll(self.s.batch_size, self.s.poll_timeout_s)
            polled = time.monotonic()
            # learn this batch on the learner thread while the next one is fetched and decoded
            previous = self._learn_in_background(batch)
            now = time.monotonic()
            if batch.events or batch.rejected or not source.ready():
                last_event = now
                loss = previous if previous is not None else loss
                bar.update(len(batch.events))
                bar.set_postfix(loss=f"{loss:.3f}", rejected=self.rejected, refresh=False)
            elif (
                self.s.stop_when_idle_s is not None and now - last_event >= self.s.stop_when_idle_s
            ):
                log.info("no event for %.1f s: stopping", now - last_event)
                break
            events_due = (
                self.s.checkpoint_every_events is not None
                and self._since_ckpt >= self.s.checkpoint_every_events
                and self._ckpt_failures == 0
            )
            if now >= next_ckpt or events_due:
                self.progress.turn("checkpointing")
                self.checkpoint()  # waits for the batch being learned
                next_ckpt = time.monotonic() + self._retry_delay()
            self._observe(source, polled, max_gap_s)
            if now - last_log >= self.s.log_every_s:
                rate = (self.learner.events_applied - applied0) / max(now - started, 1e-9)
                q = self.learner.figures()  # progressive: scored before learning
                log.info(
                    "applied=%d rejected=%d loss=%.4f rate=%.0f ev/s lag=%s "
                    "recall@10=%.4f (rolling %.4f) recall@100=%.4f (rolling %.4f) evaluated=%d",
                    self.learner.events_applied,
                    self.rejected,
                    loss,
                    rate,
                    source.lag(),
                    q["recall@10"],
                    q["recall@10_rolling"],
                    q["recall@100"],
                    q["recall@100_rolling"],
                    q["evaluated"],
                )
                last_log = now
        loss = self._wait_learning() or loss
        bar.set_postfix(loss=f"{loss:.3f}", rejected=self.rejected, refresh=True)
        bar.close()
        self.elapsed_s = max(last_event - started, 1e-9)  # the idle tail is not training time
        self.events_this_run = self.learner.events_applied - applied0

    def _retry_delay(self) -> float:
        """Seconds to the next checkpoint: the interval, or a backoff after failures."""
        if self._ckpt_failures == 0:
            return self.s.checkpoint_every_s
        backoff = 2.0 ** min(self._ckpt_failures - 1, 6)
        return min(self.s.checkpoint_every_s, backoff, _RETRY_MAX_S)

    def _observe(self, source: EventSource, polled: float, max_gap_s: float) -> None:
        """After a turn of the loop (on the poll thread): poll-interval alarm, lag gauges."""
        gap = time.monotonic() - polled
        self.metrics.poll_gap.set(gap)
        if gap > max_gap_s:
            self.metrics.poll_interval_exceeded.inc()
            log.error(
                "ALARM a batch and checkpoint took %.1f s, over max_poll_interval_ms=%d: the "
                "consumer has left its group and its partitions are re-read from the last "
                "offsets handed out (nothing is lost). Lower --batch-size or raise "
                "--max-poll-interval-ms",
                gap,
                self.s.max_poll_interval_ms,
            )
        elif gap > max_gap_s / 2:
            log.warning(
                "a batch and checkpoint took %.1f s, over half of max_poll_interval_ms=%d; "
                "lower --batch-size or raise --max-poll-interval-ms",
                gap,
                self.s.max_poll_interval_ms,
            )
        self.metrics.set_lag(source.lag())
        assigned = getattr(source, "assigned", None)  # Kafka only; a file is one partition
        self.metrics.partitions.set(len(assigned()) if callable(assigned) else 1)

    def _apply(self, batch: Batch) -> float | None:
        loss = None
        if batch.events:
            faults.hit("slow-step")
            stats = self.learner.learn(EventColumns.from_events(batch.events))
            loss = stats.loss
            if self.oracle is not None:
                self.oracle.update(e.event_id for e in batch.events)
            self._since_ckpt += len(batch.events)
            self.metrics.trained.inc(len(batch.events))
            self.metrics.applied.set(self.learner.events_applied)
            self.metrics.loss.set(loss)
            self._progressive()
            faults.hit("after-step")
        moved = any(self.offsets.get(k) != v for k, v in batch.offsets.items())
        if moved:
            self.progress.advanced()
        if batch.events or batch.rejected or moved:
            self.offsets.update(batch.offsets)
            self.rejected += batch.rejected
            self.metrics.consumed.inc(len(batch.events) + batch.rejected)
            self.metrics.rejected.inc(batch.rejected)
            self._dirty = True
        return loss

    def _progressive(self) -> None:
        """Progressive recall for the metrics, at most once a second, if this learner keeps it
        (read defensively: `Learner.figures()` is not part of the interface the daemon relies on).
        """
        now = time.monotonic()
        if now - self._figures_at < 1.0:
            return
        self._figures_at = now
        figures = getattr(self.learner, "figures", None)
        if not callable(figures):
            return
        try:
            self.metrics.set_figures(figures())
        except Exception:  # a figure that cannot be computed is no reason to stop training
            return

    def _learn_in_background(self, batch: Batch) -> float | None:
        """Hand `batch` to the learner thread, after the previous one is learned; returns the
        previous batch's loss. Only this thread polls the consumer; only the learner thread
        (or a caller that waited for it) touches the model and the offsets."""
        previous = self._wait_learning()
        if batch.events or batch.rejected or batch.offsets:
            self.progress.turn("training")
            self._learning = self._learner_thread.submit(self._apply, batch)
        return previous

    def _wait_learning(self) -> float | None:
        """Wait for the batch being learned (re-raising its error); its loss, if any."""
        pending, self._learning = self._learning, None
        return pending.result() if pending is not None else None

    def _on_revoke(self, pending: Batch) -> None:
        """Partitions are going: learn what was fetched from them, checkpoint, commit."""
        self._wait_learning()
        self._apply(pending)
        self.checkpoint()

    # ---- checkpoint ------------------------------------------------------------------------
    def checkpoint(self) -> bool:
        """Write a checkpoint, then commit its offsets; False (and an alarm) if it failed."""
        self._wait_learning()
        if not self._dirty or self.source is None:
            return True
        started = time.monotonic()
        try:
            self.source.flush()  # dead letters durable before the offsets that skip them
            ckpt = self._save()
        except (CheckpointError, SinkError) as e:
            self._ckpt_failures += 1
            self._failing_since = self._failing_since or started
            self.metrics.checkpoint_failures.inc()
            log.error(
                "ALARM checkpoint failed (%d in a row): %s. Training goes on; offsets are not "
                "committed; checkpoint %s stays the newest; retrying in %.0f s",
                self._ckpt_failures,
                e,
                self.checkpoint_id,
                self._retry_delay(),
            )
            return False
        faults.hit("after-checkpoint")
        if self._ckpt_failures:
            log.warning("checkpoint %d written after %d failures", ckpt.id, self._ckpt_failures)
        self._ckpt_failures, self._failing_since = 0, None
        self.checkpoint_id, self._since_ckpt, self._dirty = ckpt.id, 0, False
        self._last_ckpt = time.monotonic()
        self.metrics.checkpoint_id.set(ckpt.id)
        self.metrics.checkpoint_seconds.set(self._last_ckpt - started)
        try:
            self.source.commit(dict(self.offsets))
        except SourceError as e:  # the checkpoint holds the offsets; commits serve monitoring
            log.warning("offsets of checkpoint %d not committed: %s", ckpt.id, e)
        log.info(
            "checkpoint %d written in %.2f s (%d events applied)",
            ckpt.id,
            self._last_ckpt - started,
            self.learner.events_applied,
        )
        return True

    def _save(self) -> Checkpoint:
        tensors, learner_meta = self.learner.state()
        cid = self.store.next_id()
        created_ms = time.time_ns() // 1_000_000
        extra = {"model": f"two-tower dim={self.s.model.dim} layers={list(self.s.model.layers)}"}

        def write_serving(path: Path) -> None:
            from store import save_snapshot

            save_snapshot(to_snapshot(self.learner, cid, created_ms, extra), path)

        writers: dict[str, Callable[[Path], None]] = {SERVING: write_serving}
        if self.oracle is not None:
            writers[ORACLE] = self.oracle.writer()
        settings = asdict(self.s.model)
        settings["negatives"] = ",".join(str(n) for n in self.s.model.negatives)
        return self.store.save(
            tensors,
            {
                "created_ms": created_ms,
                "offsets": self.offsets,
                "identity": self.identity,
                "events_applied": self.learner.events_applied,
                "events_rejected": self.rejected,
                "source": self.s.source,
                "settings": settings,
                "learner": learner_meta,
            },
            extra=writers,
            ckpt_id=cid,
        )

    # ---- health and metrics ----------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy unless training stalled or checkpoints kept failing for `stall_after_s`."""
        failing_s = 0.0 if self._failing_since is None else time.monotonic() - self._failing_since
        checks: dict[str, Any] = {
            "standby": self.standby,
            "stalled": self.watchdog.stalled,
            "checkpoint_failures": self._ckpt_failures,
            "checkpoint_failing_s": round(failing_s, 1),
            "checkpoint": self.checkpoint_id,
            "phase": self.progress.phase,
        }
        if self.watchdog.stalled:
            checks["reason"] = self.watchdog.reason
        ok = not self.watchdog.stalled and failing_s <= self.s.stall_after_s
        return ok, checks

    # ---- the writer process ----------------------------------------------------------------
    def _start_writer(self) -> None:
        assert self.s.redis
        self._writer = WriterProcess(
            self.s.checkpoint_dir, self.s.namespace, self.s.redis, self.s.redis_tls
        )

    def _stop_writer(self) -> None:
        if self._writer is None:
            return
        spent = 0.0 if self.stop_requested_at is None else time.monotonic() - self.stop_requested_at
        self._writer.stop(wait_s=max(5.0, self.s.shutdown_grace_s - spent - 1.0))
        self._writer = None
