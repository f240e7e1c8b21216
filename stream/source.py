"""The I/O protocol every event source speaks, and the batch it yields.

Order of calls, per checkpoint: ``poll`` ... ``poll``, then the trainer writes a checkpoint
holding the batches' ``offsets`` and ``identity()``, calls ``flush()`` (dead letters durable)
before it and ``commit(offsets)`` after it. Position keys are ``"<topic>:<partition>"`` for
Kafka and ``"file:<absolute path>"`` for files; a value is the *next* position to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stream.columns import Columns
from stream.event import Interaction


@dataclass
class Batch:
    """Valid events plus where the source stands after them.

    `offsets` covers every partition or file this batch advanced, through valid and
    rejected records alike; `rejected` counts the records sent to the dead-letter sink. The
    events come as objects (`events`) or, from a source in another process, as `columns`;
    `as_columns()` gives columns either way.
    """

    events: list[Interaction] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    columns: Columns | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        """Valid events in the batch."""
        return len(self.columns) if self.columns is not None else len(self.events)

    def as_columns(self) -> Columns:
        return self.columns if self.columns is not None else Columns.of(self.events)


@runtime_checkable
class EventSource(Protocol):
    """Where events come from: a Kafka topic, a JSONL log."""

    def poll(self, max_events: int, timeout_s: float) -> Batch:
        """Up to `max_events` events; returns once they are ready or `timeout_s` has passed.

        An empty batch is normal (nothing new yet, or the end of a file).
        """
        ...

    def flush(self) -> None:
        """Make the dead letters sent so far durable; raise if any was lost."""
        ...

    def commit(self, offsets: dict[str, int]) -> None:
        """Record `offsets` as consumed; only after a checkpoint holding them is on disk."""
        ...

    def lag(self) -> dict[str, int]:
        """Events known to be waiting, per position key (best effort, may be partial)."""
        ...

    def ready(self) -> bool:
        """Whether events can arrive now (a Kafka consumer owns partitions); idle time
        counts only while ready, so waiting for a group join is not mistaken for idleness."""
        ...

    def identity(self) -> dict[str, str]:
        """What the offsets refer to, e.g. ``{"kafka:<topic>": topic_id}``.

        Keep it with the offsets: on resume, a different identity means the offsets
        point into a different log (a re-created topic, a replaced file).
        """
        ...

    def close(self) -> None:
        """Release connections and files; safe to call twice."""
        ...
