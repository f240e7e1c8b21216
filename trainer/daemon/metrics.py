"""Prometheus metrics and a health check over HTTP: `--metrics-port` of `train` and `publish`.

``GET /metrics`` answers in the Prometheus text format; ``GET /healthz`` answers 200 with a
JSON body of checks when healthy, 503 with the failing checks otherwise (a trainer that has
stalled, a writer whose publishes keep failing). Values are set by the loop that owns them and
read by the server thread; nothing here touches the Kafka consumer or Redis.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]


def total_lag(ends: dict[str, int], positions: dict[str, int], owned: set[str]) -> int:
    """Records past the trainer's positions over the `owned` partitions (a partition it has no
    position for counts from offset 0).

    >>> total_lag({"t:0": 10, "t:1": 5}, {"t:0": 4}, {"t:0", "t:1"})
    11
    """
    return sum(max(0, end - positions.get(key, 0)) for key, end in ends.items() if key in owned)


class TotalLag:
    """Feeds `recstream_topic_lag_events` from end offsets read on the watchdog's thread: over
    the owned partitions; over all before the first assignment (the checkpoint's positions);
    unknown from losing every partition (a kick-out) until the rejoin, never a stale figure."""

    def __init__(self, metrics: TrainerMetrics) -> None:
        self.metrics = metrics
        self.was_ready = False

    def update(
        self, ends: dict[str, int], ready: bool, owned: set[str] | None, positions: dict[str, int]
    ) -> None:
        self.was_ready = self.was_ready or ready
        if self.was_ready and not ready:
            self.metrics.set_total_lag(None)
            return
        scope = owned if ready and owned is not None else set(ends)
        self.metrics.set_total_lag(total_lag(ends, positions, scope))


class TrainerMetrics:
    """The trainer's metrics, in a registry of their own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.consumed = Counter(
            "recstream_events_consumed", "Records read from the source, valid or not", registry=r
        )
        self.trained = Counter(
            "recstream_events_trained", "Events the model learned from", registry=r
        )
        self.rejected = Counter(
            "recstream_events_rejected", "Records sent to the dead-letter sink", registry=r
        )
        self.applied = Gauge(
            "recstream_events_applied",
            "Events in the model's state (restored from the checkpoint, then learned)",
            registry=r,
        )
        self.lag = Gauge(
            "recstream_lag_events",
            "High watermark minus the trainer's next offset, per owned partition",
            ["partition"],
            registry=r,
        )
        self.total_lag = Gauge(
            "recstream_topic_lag_events",
            "The topic's end offsets (read with a client of its own) minus the trainer's "
            "positions, over the partitions it owns (all of them before its first assignment); "
            "NaN while unknown (see recstream_lag_known)",
            registry=r,
        )
        self.lag_known = Gauge(
            "recstream_lag_known",
            "1 while the total lag is known; 0 before the first reading and between losing "
            "every partition (kicked out of the group) and the rejoin",
            registry=r,
        )
        self.set_total_lag(None)
        self.loss = Gauge("recstream_loss", "Training loss of the last batch", registry=r)
        self.recall = Gauge(
            "recstream_progressive_recall",
            "Progressive (test-then-train) recall@k, running mean",
            ["k"],
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "recstream_checkpoint_age_seconds",
            "Seconds since the last checkpoint was written (since start if none yet)",
            registry=r,
        )
        self.checkpoint_id = Gauge(
            "recstream_checkpoint_id", "Id of the newest checkpoint written or loaded", registry=r
        )
        self.checkpoint_seconds = Gauge(
            "recstream_checkpoint_duration_seconds", "How long the last checkpoint took", registry=r
        )
        self.checkpoint_stall_seconds = Gauge(
            "recstream_checkpoint_stall_seconds",
            "How long training stood still for the last checkpoint's snapshot (the write "
            "itself runs beside training)",
            registry=r,
        )
        self.checkpoint_failures = Counter(
            "recstream_checkpoint_failures",
            "Checkpoints that could not be written (the previous one is kept)",
            registry=r,
        )
        self.publish_age = Gauge(
            "recstream_publish_age_seconds",
            "Seconds since the writer last published (NaN before the first publish)",
            registry=r,
        )
        self.published_version = Gauge(
            "recstream_published_version",
            "Version the writer last made current (NaN before the first)",
            registry=r,
        )
        self.poll_gap = Gauge(
            "recstream_poll_gap_seconds",
            "Time between the last two polls (training + checkpoint); keep it well under "
            "max_poll_interval_ms",
            registry=r,
        )
        self.poll_interval_exceeded = Counter(
            "recstream_poll_interval_exceeded",
            "Times the time between polls exceeded max_poll_interval_ms",
            registry=r,
        )
        self.stalled = Gauge(
            "recstream_stalled", "1 while the watchdog sees training stalled", registry=r
        )
        self.standby = Gauge(
            "recstream_standby", "1 while waiting for the checkpoint directory's lock", registry=r
        )
        self.partitions = Gauge(
            "recstream_partitions_assigned", "Partitions this trainer owns", registry=r
        )
        self._lag_keys: set[str] = set()

    def set_lag(self, lag: dict[str, int]) -> None:
        """Lag per partition; partitions no longer owned disappear from the metric."""
        for key in self._lag_keys - lag.keys():
            self.lag.remove(key)
        for key, value in lag.items():
            self.lag.labels(key).set(value)
        self._lag_keys = set(lag)

    def set_total_lag(self, total: int | None) -> None:
        """The total lag, or None: unknown (NaN and recstream_lag_known 0), never a stale 0."""
        self.total_lag.set(math.nan if total is None else total)
        self.lag_known.set(0 if total is None else 1)

    def set_figures(self, figures: dict[str, Any]) -> None:
        """Progressive figures as the learner reports them: ``recall@K`` → the recall gauge."""
        for name, value in figures.items():
            k = name[len("recall@") :] if name.startswith("recall@") else ""
            if k.isdigit() and isinstance(value, int | float):
                self.recall.labels(k).set(float(value))

    def follow_published(self, read: Callable[[], dict[str, Any] | None]) -> None:
        """Publish age and version from the writer's note, read at scrape time."""

        def value(what: str) -> float:
            record = read()
            if record is None:
                return math.nan
            if what == "version":
                return float(record["version"])
            return time.time() - record["published_ms"] / 1000

        self.publish_age.set_function(lambda: value("age"))
        self.published_version.set_function(lambda: value("version"))


class WriterMetrics:
    """The writer process's metrics."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.published = Counter(
            "recstream_publishes", "Checkpoints published (made current)", registry=r
        )
        self.failures = Counter(
            "recstream_publish_failures", "Publish attempts that failed (retried)", registry=r
        )
        self.version = Gauge(
            "recstream_published_version",
            "Version current in Redis after the last publish",
            registry=r,
        )
        self.publish_seconds = Gauge(
            "recstream_publish_duration_seconds", "How long the last publish took", registry=r
        )
        self.stale_seconds = Gauge(
            "recstream_publish_stale_seconds",
            "Checkpoint written to pointer flipped, for the last publish: the stale-read window",
            registry=r,
        )
        self.publish_age = Gauge(
            "recstream_publish_age_seconds",
            "Seconds since the last successful publish",
            registry=r,
        )


class MetricsServer:
    """Serves /metrics and /healthz on a daemon thread until `close()`."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        handler = _handler(registry, health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            from trainer.errors import ConfigError

            raise ConfigError(f"--metrics-port: cannot listen on {host}:{port}: {e}") from e
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # close() waits up to this long
            name="recstream-metrics",
            daemon=True,
        )
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/health"):
                ok, checks = health()
                body = json.dumps({"status": "ok" if ok else "failing", **checks}).encode()
                self._send(200 if ok else 503, "application/json", body)
            else:
                self._send(404, "text/plain", b"try /metrics or /healthz\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news

    return Handler
