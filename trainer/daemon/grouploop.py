"""The loop of one rank of a group of trainers (`torchrun ... -m trainer train ...`).

Every rank turns the loop in lock step: poll its own partitions, agree with the others on
whether to stop or checkpoint (one small collective), learn the step together
(`Learner.learn` shares events and gradients), and, when agreed, write the group checkpoint
together (`groupckpt`). So every rank takes the same number of steps and checkpoints at the
same one: the group's state on disk is always one consistent cut. Rank r reads partitions
p mod W == r; a file source is read by rank 0 alone (events reach their users' owners through
the learners). Rank 0 runs the writer child; rank r serves metrics on --metrics-port + r.
SIGTERM on any rank stops every rank after the same step, with a final group checkpoint.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import torch

from stream import Batch, EventSource, parse_uri
from trainer.core.columns import EventColumns
from trainer.core.evaluation import warm_up
from trainer.core.learner import Learner
from trainer.daemon.allocator import keep_freed_memory
from trainer.daemon.group import Membership, leave
from trainer.daemon.groupckpt import GroupCheckpointer
from trainer.daemon.hooks import hooks_for
from trainer.daemon.metrics import MetricsServer, TrainerMetrics
from trainer.daemon.settings import TrainSettings
from trainer.daemon.stopping import StopOnSignal
from trainer.daemon.watchdog import Progress, Watchdog
from trainer.daemon.writer_process import WriterProcess
from trainer.errors import ConfigError

log = logging.getLogger(__name__)


class _Nothing:
    """The source of a rank with nothing to read (a file is read by rank 0)."""

    def poll(self, max_events: int, timeout_s: float) -> Batch:
        time.sleep(min(timeout_s, 0.05))
        return Batch()

    def flush(self) -> None: ...
    def commit(self, offsets: dict[str, int]) -> None: ...
    def lag(self) -> dict[str, int]:
        return {}

    def ready(self) -> bool:
        return True

    def identity(self) -> dict[str, str]:
        return {}

    def close(self) -> None: ...


class GroupTrainer(StopOnSignal):
    def __init__(self, settings: TrainSettings, group: Membership) -> None:
        self.s, self.group = settings, group
        self.hooks = hooks_for(settings.test_mode)
        self.metrics = TrainerMetrics()
        self.checkpointer = GroupCheckpointer(settings, group, self.hooks)
        # the loop-turn half of a single trainer's watchdog: a rank stuck in a step, a
        # checkpoint or a collective (a peer that hangs) fails /healthz after --stall-after
        self.progress = Progress()
        self.watchdog = Watchdog(
            self.progress, settings.stall_after_s, on_change=self.metrics.stalled.set
        )
        self.shutdown_s: float | None = None
        self.rejected = 0
        self.checkpoint_id: int | None = None
        self.events_this_run = 0
        self.elapsed_s = 1e-9
        self.collective_s = 0.0  # in the group's collectives, from the start to the last event

    def run(self) -> Learner:
        warm_up()
        s, g = self.s, self.group
        torch.set_num_threads(s.threads)
        keep_freed_memory()
        server = None
        if s.metrics_port is not None:
            port = s.metrics_port + g.rank if s.metrics_port else 0
            server = MetricsServer(self.metrics.registry, self._health, s.metrics_host, port)
        writer: WriterProcess | None = None
        learner, offsets, identity, self.rejected, self.checkpoint_id = self.checkpointer.restore()
        source = self._open(offsets, resuming=self.checkpoint_id is not None)
        try:
            for key, was in identity.items():
                now = source.identity().get(key)
                if now is not None and now != was:
                    raise ConfigError(
                        f"{key} was re-created (id {was} is now {now}): the checkpoint's offsets "
                        "do not apply to it; start a fresh --checkpoint-dir"
                    )
            identity.update(source.identity())
            if s.redis and g.rank == 0:
                writer = WriterProcess(s.checkpoint_dir, s.namespace, s.redis, s.redis_tls)
            self.watchdog.start()
            self._loop(learner, source, offsets, identity)
        finally:
            self.watchdog.close()
            source.close()
            if writer is not None:
                writer.stop(wait_s=max(5.0, s.shutdown_grace_s - 1.0))
            if server is not None:
                server.close()
            leave()
            if self.stop_requested_at is not None:
                self.shutdown_s = time.monotonic() - self.stop_requested_at
        return learner

    def _open(self, offsets: dict[str, int], resuming: bool) -> EventSource:
        s, g = self.s, self.group
        uri = parse_uri(s.source)
        if uri.scheme == "file":
            if g.rank != 0:
                return _Nothing()
            from trainer.daemon.sources import open_source

            return open_source(s, offsets, lambda batch: None, resuming).source
        from stream.kafka import KafkaSource, build_source, ensure_topic
        from stream.kafka.admin import describe_topic
        from trainer.daemon.sources import kafka_settings

        ks = kafka_settings(s, uri.bootstrap)
        ensure_topic(ks, uri.topic, s.partitions)
        info = describe_topic(ks, uri.topic)
        count = len(info["partitions"]) if info else s.partitions
        if g.world > count:
            raise ConfigError(
                f"{g.world} trainers for {count} partitions of {uri.topic!r}: each rank reads "
                "whole partitions, so use at most as many ranks as partitions"
            )
        options: dict[str, Any] = {
            "start_offsets": offsets,
            "dead_letter_topic": f"{uri.topic}.dlq",
            "trust_committed": not resuming,
            "partitions": g.partitions(count),
        }
        if s.source_process:
            from stream.process import ProcessSource

            build = functools.partial(build_source, ks.plain(), uri.topic, s.group, **options)
            return ProcessSource(build, (), s.batch_size, s.poll_timeout_s)
        return KafkaSource(ks, uri.topic, s.group, **options)

    def _loop(
        self,
        learner: Learner,
        source: EventSource,
        offsets: dict[str, int],
        identity: dict[str, str],
    ) -> None:
        s, sync = self.s, self.group.sync
        started = last_event = time.monotonic()
        next_ckpt = started + s.checkpoint_every_s
        applied0, since = learner.events_applied, 0
        while True:
            self.progress.turn("polling")
            batch = source.poll(s.batch_size, s.poll_timeout_s)
            now = time.monotonic()
            if batch.count or batch.rejected:
                last_event = now
            every = s.checkpoint_every_events
            mine = {
                "stop": self.stop_requested,
                "due": now >= next_ckpt or (every is not None and since >= every),
                "idle": now - last_event,
            }
            self.progress.turn("learning")
            flags = sync.share(mine)
            cols = batch.as_columns()
            if batch.count:
                self.hooks.hit("slow-step")
            stats = learner.learn(
                EventColumns(cols.users, cols.items, cols.ts, cols.weights, cols.contexts)
            )
            if batch.count:
                self.collective_s = self.group.sync.seconds  # up to the last event, as elapsed_s
                self.hooks.applied(cols.event_ids or [None] * batch.count)
                self.hooks.hit("after-step")
                self.metrics.trained.inc(batch.count)
                self.metrics.loss.set(stats.loss)
            offsets.update(batch.offsets)
            self.rejected += batch.rejected
            since += stats.events
            self.metrics.applied.set(learner.events_applied)
            stop = any(f["stop"] for f in flags)
            idle = s.stop_when_idle_s is not None and all(
                f["idle"] >= s.stop_when_idle_s for f in flags
            )
            if stop or idle or any(f["due"] for f in flags):
                self.progress.turn("checkpoint")
                cid = self.checkpointer.checkpoint(
                    learner, source, dict(offsets), dict(identity), self.rejected
                )
                if cid is not None:
                    self.checkpoint_id, since = cid, 0
                    self.metrics.checkpoint_id.set(cid)
                next_ckpt = time.monotonic() + s.checkpoint_every_s
            if stop or idle:
                log.info("rank %d: stopping (%s)", self.group.rank, "signal" if stop else "idle")
                break
        self.elapsed_s = max(last_event - started, 1e-9)
        self.events_this_run = learner.events_applied - applied0

    def _health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy unless this rank's loop has not turned for --stall-after seconds."""
        checks: dict[str, Any] = {
            "rank": self.group.rank,
            "world": self.group.world,
            "stalled": self.watchdog.stalled,
            "checkpoint": self.checkpoint_id,
            "phase": self.progress.phase,
        }
        if self.watchdog.stalled:
            checks["reason"] = self.watchdog.reason
        return not self.watchdog.stalled, checks
