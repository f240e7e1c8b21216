"""The daemons' settings: `TrainSettings`, one frozen object the CLI builds and `Trainer` takes
whole, and the options the writer (`recstream publish`) shares with it.

Each field with an `Option` (`trainer.options`) is a flag, a ``RECSTREAM_*`` variable and a key
of the TOML file, with its one default; fields without one are set in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from store.layout import DEFAULT_NAMESPACE
from stream.defaults import (
    HEARTBEAT_INTERVAL_MS,
    MAX_POLL_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    TOPIC_PARTITIONS,
)
from stream.formats import LogFormat
from trainer.core.settings import ModelSettings
from trainer.options import Option, iso_ms, number, path, port, positive, seconds

OPERATIONS = "operations"

NAMESPACE = Option("--namespace", DEFAULT_NAMESPACE, "prefix of every Redis key of a deployment")
METRICS_PORT = Option(
    "--metrics-port",
    None,
    "serve Prometheus metrics on /metrics and a health check on /healthz",
    port,
    group=OPERATIONS,
)
METRICS_HOST = Option(
    "--metrics-host",
    "127.0.0.1",
    "address the metrics server binds (0.0.0.0 in a container)",
    group=OPERATIONS,
)
PROGRESS = Option("--no-progress", True, "no progress bar (shown only when stderr is a terminal)")
CONNECT_TIMEOUT = Option(
    "--connect-timeout",
    180.0,
    "at start, wait this long for the Kafka broker (train) or Redis (publish --watch), retrying "
    "with backoff, then exit 1",
    seconds,
    metavar="SECONDS",
)
CHECKPOINT_DIR = Option(
    "--checkpoint-dir",
    None,
    "the trainer's checkpoint directory",
    path,
    metavar="DIR",
    required=True,
)
TEST_MODE = Option("--test-mode", False, "fault points and exact apply counts", hidden=True)


@dataclass(frozen=True)
class TrainSettings:
    source: str = Option(
        "--source", None, "kafka://HOST:PORT/TOPIC or file://PATH", metavar="URI", required=True
    ).field()
    checkpoint_dir: Path = CHECKPOINT_DIR.field()  # noqa: RUF009 (a dataclasses.field)
    group: str = Option("--group", "recstream", "Kafka consumer group").field()
    redis: str | None = Option(
        "--redis",
        None,
        "when given, a writer process publishes every checkpoint to this Redis",
        metavar="URL",
    ).field(repr=False)  # may hold a password
    namespace: str = NAMESPACE.field()
    connect_timeout_s: float = CONNECT_TIMEOUT.field()
    batch_size: int = Option("--batch-size", 1024, "events per training step", positive).field()
    stop_when_idle_s: float | None = Option(
        "--stop-when-idle",
        None,
        "exit cleanly once no event arrived for this long",
        number,
        metavar="SECONDS",
    ).field()
    from_time_ms: int | None = Option(
        "--from-time",
        None,
        "start a fresh model at the topic's offsets at this time (UTC if no zone)",
        iso_ms,
        metavar="ISO8601",
    ).field()
    checkpoint_every_s: float = Option(
        "--checkpoint-every",
        60.0,
        "checkpoint (then commit offsets) this often",
        seconds,
        metavar="SECONDS",
    ).field()
    checkpoint_every_events: int | None = Option(
        "--checkpoint-every-events",
        None,
        "also checkpoint after every N events",
        positive,
        metavar="N",
    ).field()
    threads: int = Option(
        "--threads", 1, "torch intra-op threads; 1 is often fastest on 2 cores", positive
    ).field()
    source_process: bool = Option(
        "--no-source-process",
        True,
        "read and decode Kafka records in this process instead of a process of their own "
        "(which keeps fetching and decoding off the learner's interpreter lock)",
    ).field()
    partitions: int = Option(
        "--partitions",
        TOPIC_PARTITIONS,
        "partitions of the topic if the trainer has to create it",
        positive,
    ).field()
    dead_letter: Path | None = Option(  # noqa: RUF009 (a dataclasses.field)
        "--dead-letter",
        None,
        "dead-letter file for file sources (default: CHECKPOINT_DIR/dead-letter.jsonl)",
        path,
    ).field()
    session_timeout_ms: int = Option(
        "--session-timeout-ms", SESSION_TIMEOUT_MS, "Kafka consumer group session timeout", positive
    ).field()
    heartbeat_interval_ms: int = Option(
        "--heartbeat-interval-ms", HEARTBEAT_INTERVAL_MS, "Kafka heartbeat interval", positive
    ).field()
    max_poll_interval_ms: int = Option(
        "--max-poll-interval-ms",
        MAX_POLL_INTERVAL_MS,
        "longest time between polls (a batch plus a checkpoint) before the group drops this "
        "consumer; over half of it logs a warning",
        positive,
    ).field()
    progress: bool = PROGRESS.field()
    metrics_port: int | None = METRICS_PORT.field()
    metrics_host: str = METRICS_HOST.field()
    stall_after_s: float = Option(
        "--stall-after",
        120.0,
        "alarm (and fail /healthz) when training stands still this long while events wait, or "
        "the loop does not turn",
        seconds,
        metavar="SECONDS",
        group=OPERATIONS,
    ).field()
    shutdown_grace_s: float = Option(
        "--shutdown-grace",
        30.0,
        "time the supervisor allows after SIGTERM; bounds the wait for the writer child",
        seconds,
        metavar="SECONDS",
        group=OPERATIONS,
    ).field()
    test_mode: bool = TEST_MODE.field()  # exact per-event_id apply counts; fault points
    # set in code: from the Kafka and Redis security flags, and tuning without a flag
    kafka_options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}),
        repr=False,  # may hold SASL secrets
    )
    redis_tls: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    log_format: LogFormat = field(default_factory=LogFormat)  # how a file:// source is read
    poll_timeout_s: float = 0.5
    standby_poll_s: float = 0.2
    log_every_s: float = 10.0
    model: ModelSettings = field(default_factory=ModelSettings)
