"""When replay sends each event: at most `rate` events/s, and at `speed` times the pace the
events happened (the gaps between their timestamps).

Each event's send time is computed from the start, not from the previous event, so a late
send (a slow broker, a busy machine) is caught up on rather than added to every later gap.
Event time is the largest timestamp seen so far: in a log not sorted by time an event older
than one already sent goes at once.

>>> now = [0.0]
>>> pace = Pace(speed=2.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
>>> [pace.wait(ts) for ts in (1000, 3000, 3500, 2000)]
[0.0, 1.0, 0.25, 0.0]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from stream.errors import SourceError

MIN_SLEEP_S = 0.001  # closer than this, send now: sleeping per event would cost more


class Pace:
    """`rate` events/s and `speed`× event time, 0 = no limit; both given, both hold."""

    def __init__(
        self,
        rate: float = 0.0,
        speed: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (math.isfinite(rate) and rate >= 0):
            raise SourceError(f"--rate must be >= 0 events/s (0 = unlimited), got {rate}")
        if not (math.isfinite(speed) and speed >= 0):
            raise SourceError(
                f"--speed must be >= 0 (2 = twice as fast as the events happened,"
                f" 0 = as fast as possible), got {speed}"
            )
        self.rate, self.speed = rate, speed
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._first_ts: int | None = None
        self._span_ms = 0  # event time since the first event
        self._sent = 0

    @property
    def limited(self) -> bool:
        return self.rate > 0 or self.speed > 0

    def wait(self, ts: int | None) -> float:
        """Sleep until the event of time `ts` (epoch ms; None: no time) is due; return the
        seconds slept."""
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start
        if self.rate > 0:
            due += self._sent / self.rate
        if self.speed > 0 and ts is not None:
            if self._first_ts is None:
                self._first_ts = ts
            self._span_ms = max(self._span_ms, ts - self._first_ts)
            due = max(due, self._start + self._span_ms / 1000 / self.speed)
        self._sent += 1
        delay = due - now
        if delay < MIN_SLEEP_S:
            return 0.0
        self._sleep(delay)
        return delay
