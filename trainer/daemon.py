"""The trainer's I/O shell: source → learner → checkpoint → offsets, in that order.

Per batch: poll, learn. Per checkpoint (every `checkpoint_every_s`, on revocation, on stop):
flush dead letters, write the checkpoint (state + next offsets), then commit the offsets to
Kafka. A crash anywhere replays from the last checkpoint's offsets into the state that
checkpoint holds: nothing lost, nothing counted twice. The writer runs as its own process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from stream import Batch, EventSource, SourceError, parse_uri
from trainer.checkpoint import SERVING, CheckpointStore
from trainer.config import ModelSettings
from trainer.errors import ConfigError
from trainer.learner import EventColumns, Learner
from trainer.serving import to_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    source: str
    checkpoint_dir: Path
    group: str = "recstream"
    redis: str | None = None  # when set, a writer process publishes each checkpoint
    namespace: str = "recstream"
    batch_size: int = 1024
    poll_timeout_s: float = 0.5
    stop_when_idle_s: float | None = None
    checkpoint_every_s: float = 60.0
    from_time_ms: int | None = None
    threads: int = 1
    partitions: int = 4  # for a topic the trainer has to create
    dead_letter: Path | None = None  # file sources; default <checkpoint-dir>/dead-letter.jsonl
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    progress: bool = True
    log_every_s: float = 10.0
    model: ModelSettings = field(default_factory=ModelSettings)


def model_settings_from(meta: dict[str, Any]) -> dict[str, Any]:
    return dict(meta.get("settings", {}))


class Trainer:
    def __init__(self, settings: TrainSettings) -> None:
        self.s = settings
        self.store = CheckpointStore(settings.checkpoint_dir)
        self.stop_requested = False
        self.learner: Learner
        self.offsets: dict[str, int] = {}
        self.identity: dict[str, str] = {}
        self.rejected = 0
        self.source: EventSource | None = None
        self._dirty = False
        self._writer: subprocess.Popen[bytes] | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        """Signal-safe: only sets a flag; the loop finishes its batch, checkpoints and exits."""
        self.stop_requested = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

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
        for key in ("dim", "layers", "history"):
            have = getattr(self.s.model, key)
            want = saved[key] if key != "layers" else tuple(saved[key])
            if have != want:
                raise ConfigError(
                    f"--{key} is {have!r} but the checkpoint in {self.s.checkpoint_dir} was "
                    f"trained with {want!r}; use the same value or a new --checkpoint-dir"
                )
        self.learner = Learner.from_state(self.s.model, ckpt.tensors(), ckpt.meta["learner"])
        self.offsets = dict(ckpt.meta["offsets"])
        self.identity = dict(ckpt.meta["identity"])
        self.rejected = int(ckpt.meta["events_rejected"])
        log.info(
            "resumed from checkpoint %d: %d events applied, offsets %s",
            ckpt.id,
            self.learner.events_applied,
            self.offsets,
        )

    def _open_source(self) -> EventSource:
        uri = parse_uri(self.s.source)
        if uri.scheme == "file":
            from stream.files import FileSource

            dead = self.s.dead_letter or self.s.checkpoint_dir / "dead-letter.jsonl"
            return FileSource(uri.path, dead_letter_path=dead, start_offsets=self.offsets)
        from stream.kafka import KafkaSettings, KafkaSource, ensure_topic, offsets_for_time

        ks = KafkaSettings(
            bootstrap=uri.bootstrap,
            session_timeout_ms=self.s.session_timeout_ms,
            heartbeat_interval_ms=self.s.heartbeat_interval_ms,
        )
        ensure_topic(ks, uri.topic, self.s.partitions)
        if self.s.from_time_ms is not None and not self.offsets:
            self.offsets = offsets_for_time(ks, uri.topic, self.s.from_time_ms)
            log.info("--from-time: starting at offsets %s", self.offsets)
        return KafkaSource(
            ks,
            uri.topic,
            self.s.group,
            start_offsets=self.offsets,
            on_revoke=self._on_revoke,
            dead_letter_topic=f"{uri.topic}.dlq",
        )

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
    def run(self) -> Learner:
        torch.set_num_threads(self.s.threads)
        self._restore()
        self.source = self._open_source()
        try:
            self._check_identity(self.source)
            if self.s.redis:
                self._start_writer()
            self._loop(self.source)
            self.checkpoint()
        finally:
            self.source.close()
            self._stop_writer()
        return self.learner

    def _loop(self, source: EventSource) -> None:
        last_event = last_ckpt = last_log = time.monotonic()
        bar = tqdm(
            desc="train",
            unit="ev",
            disable=not self.s.progress,
            initial=self.learner.events_applied,
        )
        started, applied0 = time.monotonic(), self.learner.events_applied
        loss = 0.0
        while not self.stop_requested:
            batch = source.poll(self.s.batch_size, self.s.poll_timeout_s)
            stats = self._apply(batch)
            now = time.monotonic()
            if batch.events or batch.rejected or not source.ready():
                last_event = now
                loss = stats if stats is not None else loss
                bar.update(len(batch.events))
                bar.set_postfix(loss=f"{loss:.3f}", rejected=self.rejected, refresh=False)
            elif (
                self.s.stop_when_idle_s is not None and now - last_event >= self.s.stop_when_idle_s
            ):
                log.info("no event for %.1f s: stopping", now - last_event)
                break
            if now - last_ckpt >= self.s.checkpoint_every_s:
                self.checkpoint()
                last_ckpt = time.monotonic()
            if now - last_log >= self.s.log_every_s:
                rate = (self.learner.events_applied - applied0) / max(now - started, 1e-9)
                log.info(
                    "applied=%d rejected=%d loss=%.4f rate=%.0f ev/s lag=%s",
                    self.learner.events_applied,
                    self.rejected,
                    loss,
                    rate,
                    source.lag(),
                )
                last_log = now
        bar.close()
        self.elapsed_s = max(last_event - started, 1e-9)  # the idle tail is not training time
        self.events_this_run = self.learner.events_applied - applied0

    def _apply(self, batch: Batch) -> float | None:
        loss = None
        if batch.events:
            loss = self.learner.learn(EventColumns.from_events(batch.events)).loss
        if batch.events or batch.rejected or batch.offsets:
            self.offsets.update(batch.offsets)
            self.rejected += batch.rejected
            self._dirty = True
        return loss

    def _on_revoke(self, pending: Batch) -> None:
        """Partitions are going: learn what was fetched from them, checkpoint, commit."""
        self._apply(pending)
        self.checkpoint()

    # ---- checkpoint ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        if not self._dirty or self.source is None:
            return
        self.source.flush()
        tensors, learner_meta = self.learner.state()
        cid = self.store.next_id()
        created_ms = time.time_ns() // 1_000_000
        extra = {"model": f"two-tower dim={self.s.model.dim} layers={list(self.s.model.layers)}"}

        def write_serving(path: Path) -> None:
            from store import save_snapshot

            save_snapshot(to_snapshot(self.learner, cid, created_ms, extra), path)

        settings = asdict(self.s.model)
        settings["negatives"] = ",".join(str(n) for n in self.s.model.negatives)
        ckpt = self.store.save(
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
            extra={SERVING: write_serving},
            ckpt_id=cid,
        )
        self.source.commit(dict(self.offsets))
        self._dirty = False
        log.info("checkpoint %d written (%d events applied)", ckpt.id, self.learner.events_applied)

    # ---- the writer process ----------------------------------------------------------------
    def _start_writer(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "trainer",
            "publish",
            "--watch",
            "--checkpoint-dir",
            str(self.s.checkpoint_dir),
            "--namespace",
            self.s.namespace,
            "--parent-pid",
            str(os.getpid()),
        ]
        env = {**os.environ, "RECSTREAM_REDIS": self.s.redis or ""}  # the URL may hold a secret
        self._writer = subprocess.Popen(cmd, env=env)
        log.info("writer process started (pid %d)", self._writer.pid)

    def _stop_writer(self) -> None:
        if self._writer is None:
            return
        self._writer.send_signal(signal.SIGTERM)  # it publishes the newest checkpoint, then exits
        try:
            self._writer.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.error("writer did not stop within 120 s; killing it")
            self._writer.kill()
        self._writer = None
