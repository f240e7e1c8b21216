"""The writer process: publishes checkpoints' serving vectors to Redis, one version each.

Version N is checkpoint N, so publishing a checkpoint twice is harmless (the store finds the
version complete and only checks the pointer). `publish_latest` publishes the newest complete
checkpoint unless Redis already points at it (or at a newer one); Redis, not a local note, is
the truth, so a Redis that came back empty is filled again. `watch` keeps doing so as new
checkpoints appear, retrying with backoff while Redis is down or slow, until SIGTERM (then it
publishes the newest checkpoint one last time) or until its parent trainer is gone.

A published version becomes current only after all of its data was written and read back
(`store.Writer`); until then readers keep the previous version. The stale-read window, from
a checkpoint's creation to its pointer flip, is logged and exported per publish.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from store.atomic import atomic_write_bytes
from trainer.daemon.checkpoint import META, SERVING, CheckpointStore

if TYPE_CHECKING:
    from trainer.daemon.metrics import WriterMetrics

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, snap: Any) -> int: ...

    def current_version(self) -> int | None: ...


@dataclass
class WatchStatus:
    """How the watch loop fares, for the health check (written by the loop only)."""

    last_ok: float = field(default_factory=time.monotonic)  # last round without an error
    failures: int = 0  # failed attempts in a row

    def health(self, unhealthy_after_s: float = 60.0) -> tuple[bool, dict[str, Any]]:
        failing_s = time.monotonic() - self.last_ok if self.failures else 0.0
        checks = {"failures_in_a_row": self.failures, "failing_s": round(failing_s, 1)}
        return failing_s <= unhealthy_after_s, checks


def published_path(checkpoint_dir: Path, namespace: str) -> Path:
    return Path(checkpoint_dir) / f"published-{namespace}.json"


def read_published(checkpoint_dir: Path, namespace: str) -> dict[str, Any] | None:
    """What the writer last published under `namespace` (for `status` and the metrics)."""
    try:
        record = json.loads(published_path(checkpoint_dir, namespace).read_text())
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def _record(checkpoint_dir: Path, namespace: str, version: int, created_ms: int | None) -> None:
    path = published_path(checkpoint_dir, namespace)
    record = {"version": version, "published_ms": time.time_ns() // 1_000_000}
    if created_ms is not None:
        record["created_ms"] = created_ms
    try:
        atomic_write_bytes(path, json.dumps(record).encode())
    except OSError as e:  # a note for `status`; Redis holds the truth
        log.warning("cannot record the published version in %s: %s", path, e)


def publish_latest(
    checkpoint_dir: Path,
    writer: Publisher,
    namespace: str,
    force: bool = False,
    metrics: WriterMetrics | None = None,
) -> int | None:
    """Publish the newest complete checkpoint unless Redis is at it already; returns the
    version current afterwards (None: no checkpoint yet)."""
    from store import load_snapshot

    ckpt = CheckpointStore(checkpoint_dir).latest(files=(SERVING, META))
    if ckpt is None:
        return None
    current = writer.current_version()
    if current is not None and current >= ckpt.id and not force:
        done = read_published(checkpoint_dir, namespace)
        if done is None or done.get("version") != current:
            _record(checkpoint_dir, namespace, current, None)
        return current
    started = time.monotonic()
    snap = load_snapshot(ckpt.path / SERVING)
    version = writer.publish(snap)
    flipped_ms = time.time_ns() // 1_000_000
    _record(checkpoint_dir, namespace, version, snap.created_ms)
    took = time.monotonic() - started
    stale_s = (flipped_ms - snap.created_ms) / 1000
    if metrics is not None:
        metrics.published.inc()
        metrics.version.set(version)
        metrics.publish_seconds.set(took)
        metrics.stale_seconds.set(stale_s)
    log.info(
        "published checkpoint %d as version %d in %.2f s; %.2f s from checkpoint to pointer flip",
        ckpt.id,
        version,
        took,
        stale_s,
    )
    return version


def watch(
    checkpoint_dir: Path,
    writer: Publisher,
    namespace: str,
    interval_s: float,
    parent_pid: int | None = None,
    max_backoff_s: float = 30.0,
    metrics: WriterMetrics | None = None,
    status: WatchStatus | None = None,
) -> None:
    """Publish each new checkpoint until SIGTERM/SIGINT or until `parent_pid` exits."""
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # A trainer starts its writer child with these blocked, so that a stop that arrives while
    # the child is still importing waits for the handler above instead of killing it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    store = CheckpointStore(checkpoint_dir)
    backoff = interval_s
    st = status or WatchStatus()
    done: tuple[int | None, int | None] = (None, None)  # (newest checkpoint id, Redis pointer)
    if metrics is not None:
        metrics.publish_age.set_function(lambda: time.monotonic() - st.last_ok)
    while True:
        final = stop or (parent_pid is not None and os.getppid() != parent_pid)
        try:
            newest = store.next_id() - 1 or None
            current = writer.current_version()
            if final or (newest, current) != done:
                current = publish_latest(checkpoint_dir, writer, namespace, metrics=metrics)
                done = (newest, current)
            if st.failures:
                log.warning("publishing works again after %d failed attempts", st.failures)
            backoff, st.failures, st.last_ok = interval_s, 0, time.monotonic()
        except FileNotFoundError:
            continue  # the checkpoint was pruned while we read it: take the newer one now
        except Exception as e:  # Redis down or slow, a bad snapshot: log, back off, go on
            st.failures += 1
            if metrics is not None:
                metrics.failures.inc()
            log.warning(
                "publish failed (%s: %s); attempt %d, retrying in %.1f s",
                type(e).__name__,
                e,
                st.failures,
                backoff,
            )
            if final:
                raise
            _sleep(backoff * random.uniform(0.8, 1.2), lambda: stop)
            backoff = min(2 * backoff, max_backoff_s)
            continue
        if final:
            return
        _sleep(interval_s, lambda: stop)


def _sleep(seconds: float, stop: Any) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, seconds))
