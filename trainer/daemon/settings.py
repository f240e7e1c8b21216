"""The trainer daemon's settings: one frozen object the CLI builds and `Trainer` takes whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from trainer.core.settings import ModelSettings


@dataclass(frozen=True)
class TrainSettings:
    source: str
    checkpoint_dir: Path
    group: str = "recstream"
    redis: str | None = field(default=None, repr=False)  # set: a writer process publishes
    namespace: str = "recstream"
    batch_size: int = 1024
    poll_timeout_s: float = 0.5
    stop_when_idle_s: float | None = None
    checkpoint_every_s: float = 60.0
    checkpoint_every_events: int | None = None
    from_time_ms: int | None = None
    threads: int = 1
    partitions: int = 4  # for a topic the trainer has to create
    dead_letter: Path | None = None  # file sources; default <checkpoint-dir>/dead-letter.jsonl
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 300_000
    kafka_options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}),
        repr=False,  # may hold SASL secrets
    )
    redis_tls: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    stall_after_s: float = 120.0
    shutdown_grace_s: float = 30.0
    standby_poll_s: float = 0.2
    test_mode: bool = False  # exact per-event_id apply counts in the checkpoint; fault points
    progress: bool = True
    log_every_s: float = 10.0
    model: ModelSettings = field(default_factory=ModelSettings)
