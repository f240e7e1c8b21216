"""The watchdog: an alarm when training stalls, from a thread of its own.

Two signs of a stall, each held for `stall_after_s`:
- the training loop has not turned (stuck in a step, a checkpoint, a rebalance);
- the trainer's position has not moved while the log's end offsets grew (events wait, none is
  trained: a consumer that lost its partitions and never got them back, fetches that stopped).

The watchdog reads what the loop publishes in a `Progress` and asks `end_offsets` (a client of
its own, never the trainer's consumer) for the log's end. It logs one ERROR when a stall starts
and one INFO when it ends, and `stalled` feeds the health check and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What the training loop publishes for the watchdog (written by the loop only)."""

    beat: float = field(default_factory=time.monotonic)  # the loop's last turn
    moved: float = field(default_factory=time.monotonic)  # the position's last change
    phase: str = "starting"

    def turn(self, phase: str) -> None:
        self.beat, self.phase = time.monotonic(), phase

    def advanced(self) -> None:
        self.moved = time.monotonic()


class Watchdog:
    def __init__(
        self,
        progress: Progress,
        stall_after_s: float,
        end_offsets: Callable[[], dict[str, int]] | None = None,
        interval_s: float | None = None,
        on_change: Callable[[bool], None] | None = None,
        on_ends: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.progress = progress
        self.stall_after_s = stall_after_s
        self.interval_s = interval_s or max(0.2, min(5.0, stall_after_s / 4))
        self._end_offsets = end_offsets
        self._on_change = on_change
        self._on_ends = on_ends  # each reading of the end offsets (the total lag gauge)
        self._ends: deque[tuple[float, int]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stalled = False
        self.reason = ""

    @property
    def reads_ends(self) -> bool:
        """Whether it reads the log's end offsets (a Kafka source) with a client of its own."""
        return self._end_offsets is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recstream-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread, then close the end-offset client (only that thread used it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        close = getattr(self._end_offsets, "close", None)
        if callable(close):
            close()

    def _run(self) -> None:
        while True:  # a first look at once: the end offsets (lag) are known from the start
            try:
                self.check()
            except Exception:  # the watchdog must outlive anything it watches
                log.exception("watchdog check failed")
            if self._stop.wait(self.interval_s):
                return

    def check(self, now: float | None = None) -> bool:
        """One look; returns whether training is stalled now."""
        now = time.monotonic() if now is None else now
        p, limit = self.progress, self.stall_after_s
        reason = ""
        if now - p.beat > limit:
            reason = (
                f"the training loop has not turned for {now - p.beat:.0f} s (last phase: "
                f"{p.phase}); it may be stuck in a step, a checkpoint or a rebalance"
            )
        elif self._end_offsets is not None:
            grew = self._growth(now)
            if grew > 0 and now - p.moved > limit:
                reason = (
                    f"the trainer's position has not moved for {now - p.moved:.0f} s while "
                    f"{grew} records arrived in the last {limit:.0f} s (last phase: {p.phase})"
                )
        stalled = bool(reason)
        if stalled and not self.stalled:
            log.error("ALARM training stalled: %s", reason)
        elif self.stalled and not stalled:
            log.info("training moves again (stalled for: %s)", self.reason)
        if stalled != self.stalled and self._on_change is not None:
            self._on_change(stalled)
        self.stalled, self.reason = stalled, reason if stalled else self.reason
        return stalled

    def _growth(self, now: float) -> int:
        """Records added to the log over the last `stall_after_s` (0 if unknown)."""
        assert self._end_offsets is not None
        try:
            ends = self._end_offsets()
            total = sum(ends.values())
        except Exception as e:  # the broker may be away: no sample, no verdict from it
            log.debug("watchdog: no end offsets: %s", e)
            return 0
        if self._on_ends is not None:
            self._on_ends(ends)
        self._ends.append((now, total))
        while len(self._ends) > 1 and now - self._ends[1][0] >= self.stall_after_s:
            self._ends.popleft()
        first_t, first = self._ends[0]
        return total - first if now - first_t >= self.stall_after_s else 0


def poll_gap_alarm(gap_s: float, max_poll_interval_ms: int) -> bool:
    """Log the time a batch and checkpoint took between two polls when it nears the consumer's
    `max_poll_interval_ms` (a warning past half of it); True when it exceeded it (an ALARM)."""
    limit_s = max_poll_interval_ms / 1000
    if gap_s > limit_s:
        log.error(
            "ALARM a batch and checkpoint took %.1f s, over max_poll_interval_ms=%d: the "
            "consumer has left its group and its partitions are re-read from the last "
            "offsets handed out (nothing is lost). Lower --batch-size or raise "
            "--max-poll-interval-ms",
            gap_s,
            max_poll_interval_ms,
        )
        return True
    if gap_s > limit_s / 2:
        log.warning(
            "a batch and checkpoint took %.1f s, over half of max_poll_interval_ms=%d; "
            "lower --batch-size or raise --max-poll-interval-ms",
            gap_s,
            max_poll_interval_ms,
        )
    return False
