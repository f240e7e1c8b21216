"""What the fault tests share: events with unique ids, trainer processes, and the oracle.

The oracle: a trainer in test mode keeps, in every checkpoint, how many times it applied each
`event_id` (so the counts roll back with the model on a crash). The tests read the topic
independently and compare: every record in the log applied exactly once, lost = 0 and
double-applied = 0. Waiting is always polling for a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from store import Snapshot, save_snapshot
from store.server import free_port
from stream.errors import InvalidEvent
from stream.event import Decoder, encode
from stream.kafka import KafkaSettings, KafkaSink, ensure_topic
from trainer.daemon.checkpoint import SERVING, CheckpointStore
from trainer.testing.oracle import ORACLE

T0 = 1_700_000_000_000
PARTITIONS = 4
# Short group timeouts: Tansu's first JoinGroup waits session_timeout/2.
FAST_GROUP = ["--session-timeout-ms", "3000", "--heartbeat-interval-ms", "500"]
SMALL_MODEL = ["--dim", "16", "--negatives", "popularity:256,in-batch", "--history", "5"]


def event(n: int) -> bytes:
    return encode(
        {"user": f"u{n % 211}", "item": f"i{(n * 7) % 307}", "ts": T0 + n, "event_id": f"e{n}"}
    )


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Producer:
    """Produces `event(n)` records with increasing n, keyed by user, all acknowledged."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
        self.settings = KafkaSettings(bootstrap)
        self.topic = topic
        ensure_topic(self.settings, topic, partitions)
        self.next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def produce(self, count: int, extra: list[bytes] = ()) -> None:  # type: ignore[assignment]
        sink = KafkaSink(self.settings, self.topic)
        try:
            for n in range(self.next, self.next + count):
                sink.send(event(n), key=f"u{n % 211}".encode())
            for raw in extra:
                sink.send(raw)
        finally:
            sink.close()
        self.next += count

    def stream(self, rate: float) -> None:
        """Keep producing about `rate` events/s on a thread until `stop()`."""

        def run() -> None:
            sink = KafkaSink(self.settings, self.topic)
            started, sent = time.monotonic(), 0
            try:
                while not self._stop.is_set():
                    due = int((time.monotonic() - started) * rate) - sent
                    for _ in range(max(0, due)):
                        sink.send(event(self.next), key=f"u{self.next % 211}".encode())
                        self.next += 1
                        sent += 1
                    time.sleep(0.02)
            except BaseException as e:
                self.error = e
            finally:
                sink.close()

        self._thread = threading.Thread(target=run, name="test-producer", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Stop streaming; every record produced is acknowledged. Returns the count so far."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        if self.error is not None:
            raise self.error
        return self.next


def log_counts(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> Counter[str]:
    """event_id -> valid records in the topic, read by an independent consumer to the end.

    Valid is what the event format says (`stream.event.Decoder`); the rest must be rejected.
    """
    decode = Decoder().decode
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    counts: Counter[str] = Counter()
    read = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                for r in records:
                    read += 1
                    try:
                        counts[str(decode(r.value, r.timestamp).event_id)] += 1
                    except InvalidEvent:
                        continue  # garbage: the trainer must reject it
            ends = [consumer.highwater(tp) for tp in tps]
            positions = [consumer.position(tp) for tp in tps]
            if None not in ends and positions == ends:
                return counts
    finally:
        consumer.close()
    raise AssertionError(f"could not read {topic} to its end within 60 s ({read} records)")


def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> int:
    """Sum of the group's committed offsets (0 for partitions without one)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    try:
        found = [consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        consumer.close()
    return sum(x or 0 for x in found)


def applied_counts(checkpoint_dir: Path) -> tuple[int, Counter[str]]:
    """(checkpoint id, event_id -> times applied) of the newest good checkpoint."""
    ckpt = CheckpointStore(checkpoint_dir).latest()
    assert ckpt is not None, f"no checkpoint in {checkpoint_dir}"
    counts: Counter[str] = Counter()
    parts = sorted(ckpt.path.glob(f"part-*.{ORACLE}"))  # a group's: one file per rank
    for path in parts or [ckpt.path / ORACLE]:
        counts.update(json.loads(path.read_text()))
    return ckpt.id, counts


def verdict(in_log: Counter[str], applied: Counter[str]) -> tuple[int, int]:
    """(lost, double-applied): records applied fewer / more times than they are in the log."""
    lost = sum(max(0, n - applied.get(k, 0)) for k, n in in_log.items())
    doubled = sum(max(0, n - in_log.get(k, 0)) for k, n in applied.items())
    return lost, doubled


def figure(name: str, value: float, unit: str = "s") -> None:
    """Print a measured figure so that `pytest -s` (and the CI log) shows it."""
    print(f"\nFIGURE {name}: {value:.3f} {unit}", flush=True)


class Proc:
    """A `recstream` subprocess with its log in a file and its metrics on a free port."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        metrics: bool = True,
    ) -> None:
        self.port = free_port() if metrics else None
        extra = ["--metrics-port", str(self.port)] if metrics else []
        self.log_path = log_path
        self.args = args
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainer", *args, *extra],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=full_env,
        )
        self.stdout = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # orphans may hold the pipe
                self.proc.communicate(timeout=10)
            tail = self.log()[-3000:]
            raise AssertionError(
                f"recstream {self.args[0]} did not exit within {timeout} s; log:\n{tail}"
            ) from None
        self.stdout = out.decode(errors="replace")
        self._log.close()
        return self.proc.returncode

    def summary(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.wait(30)

    def samples(self) -> list[Any]:
        """Scraped metric samples (name, labels, value); [] if the endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError):
            return []
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    def metrics(self) -> dict[str, float]:
        """Scraped metrics, samples summed over labels; {} if the endpoint does not answer."""
        out: dict[str, float] = {}
        for sample in self.samples():
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
        return out

    def caught_up(self, partitions: int = PARTITIONS, applied: int | None = None) -> bool:
        """Owns every partition and has read each to its high watermark (and, if given, holds
        at least `applied` events: after a consumer drops out of its group, its high
        watermarks are stale until it rejoins, so lag alone can read 0 too early)."""
        samples = self.samples()
        lag = [s.value for s in samples if s.name == "recstream_lag_events"]
        owned = [s.value for s in samples if s.name == "recstream_partitions_assigned"]
        done = [s.value for s in samples if s.name == "recstream_events_applied"]
        enough = applied is None or (bool(done) and done[0] >= applied)
        return owned == [partitions] and len(lag) == partitions and not any(lag) and enough

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def health(self) -> tuple[int, dict[str, Any]]:
        return health_at(self.port)


def health_at(port: int | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /healthz on `port`; (0, {}) while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except (urllib.error.URLError, OSError):
        return 0, {}


def train_args(
    bootstrap: str, topic: str, group: str, checkpoint_dir: Path, *more: str
) -> list[str]:
    return [
        "train",
        "--source",
        f"kafka://{bootstrap}/{topic}",
        "--group",
        group,
        "--checkpoint-dir",
        str(checkpoint_dir),
        "--batch-size",
        "256",
        "--no-progress",
        "--test-mode",
        *FAST_GROUP,
        *SMALL_MODEL,
        *more,
    ]


DIM = 8


def snapshot(version: int, items: int, users: int = 50, stamped: bool = False) -> Snapshot:
    """Item j of version v is [v, 1, j/items, 0...]; every user is [1, -v, 0...]: a user and an
    item of the same version score exactly 0, of different versions v_i - v_u != 0.

    `stamped`: every user active at this version, so a writer copies the previous version's
    users (COPY) and rewrites them all."""
    item_vectors = np.zeros((items, DIM), np.float32)
    item_vectors[:, 0] = version
    item_vectors[:, 1] = 1
    item_vectors[:, 2] = np.arange(items) / items
    user_vectors = np.zeros((users, DIM), np.float32)
    user_vectors[:, 0] = 1
    user_vectors[:, 1] = -version
    return Snapshot(
        version=version,
        created_ms=time.time_ns() // 1_000_000,
        item_ids=[f"i{j}" for j in range(items)],
        item_vectors=item_vectors,
        user_ids=[f"u{u}" for u in range(users)],
        user_vectors=user_vectors,
        user_stamps=np.full(users, version) if stamped else None,
        stamp=version if stamped else 0,
    )


def write_checkpoint(directory: Path, snap: Snapshot) -> None:
    """A checkpoint as the trainer writes it, as far as the writer reads it."""
    meta = {"created_ms": snap.created_ms, "events_applied": 0, "offsets": {}}
    CheckpointStore(directory).save(
        {}, meta, extra={SERVING: lambda p: save_snapshot(snap, p)}, ckpt_id=snap.version
    )
