"""The writer process: publishes checkpoints' serving vectors to Redis, one version each.

`publish_latest` publishes the newest complete checkpoint once; `watch` keeps doing so as new
checkpoints appear, retrying with backoff when Redis is down, until SIGTERM (then it publishes
the newest checkpoint one last time) or until its parent trainer is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from trainer.checkpoint import META, SERVING, CheckpointStore

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, snap: Any) -> int: ...


def published_path(checkpoint_dir: Path, namespace: str) -> Path:
    return Path(checkpoint_dir) / f"published-{namespace}.json"


def read_published(checkpoint_dir: Path, namespace: str) -> dict[str, Any] | None:
    try:
        return json.loads(published_path(checkpoint_dir, namespace).read_text())
    except (OSError, ValueError):
        return None


def _record(checkpoint_dir: Path, namespace: str, version: int) -> None:
    path = published_path(checkpoint_dir, namespace)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"version": version, "published_ms": time.time_ns() // 1_000_000}))
    os.replace(tmp, path)


def publish_latest(
    checkpoint_dir: Path, writer: Publisher, namespace: str, force: bool = False
) -> int | None:
    """Publish the newest complete checkpoint unless it already is; returns its version."""
    from store import load_snapshot

    ckpt = CheckpointStore(checkpoint_dir).latest(files=(SERVING, META))
    if ckpt is None:
        return None
    done = read_published(checkpoint_dir, namespace)
    if done and done["version"] >= ckpt.id and not force:
        return int(done["version"])
    started = time.monotonic()
    version = writer.publish(load_snapshot(ckpt.path / SERVING))
    _record(checkpoint_dir, namespace, version)
    log.info(
        "published checkpoint %d as version %d in %.2f s",
        ckpt.id,
        version,
        time.monotonic() - started,
    )
    return version


def watch(
    checkpoint_dir: Path,
    writer: Publisher,
    namespace: str,
    interval_s: float = 1.0,
    parent_pid: int | None = None,
    max_backoff_s: float = 30.0,
) -> None:
    """Publish each new checkpoint until SIGTERM/SIGINT or until `parent_pid` exits."""
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    backoff = interval_s
    while True:
        final = stop or (parent_pid is not None and os.getppid() != parent_pid)
        try:
            publish_latest(checkpoint_dir, writer, namespace)
            backoff = interval_s
        except FileNotFoundError:
            continue  # the checkpoint was pruned while we read it: take the newer one now
        except Exception as e:  # Redis down or slow, a bad snapshot: log, back off, go on
            log.warning("publish failed (%s: %s); retrying in %.1f s", type(e).__name__, e, backoff)
            if final:
                raise
            time.sleep(backoff)
            backoff = min(2 * backoff, max_backoff_s)
            continue
        if final:
            return
        deadline = time.monotonic() + interval_s
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.1, interval_s))
