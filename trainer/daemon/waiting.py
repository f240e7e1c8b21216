"""Waiting at start for a service that is not up yet, with backoff.

Containers start in any order (compose's `depends_on` does not wait for readiness), so a daemon
started before its broker or its Redis retries instead of failing: `wait_for` repeats an attempt
that raises `Unreachable` (stream's or store's), one log line per failed attempt, until it works,
until the time is up (then the last `Unreachable` is raised again, saying how long it waited),
or until a stop is requested (`Stopped`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from store.errors import Unreachable as RedisUnreachable
from stream.errors import Unreachable as KafkaUnreachable
from trainer.errors import Stopped

T = TypeVar("T")
log = logging.getLogger(__name__)


def wait_for(
    attempt: Callable[[float], T],
    timeout_s: float,
    should_stop: Callable[[], bool] = lambda: False,
    setting: str | None = None,
    first_delay_s: float = 1.0,
    max_delay_s: float = 30.0,
) -> T:
    """``attempt(seconds_left)`` until it returns, retrying after 1, 2, 4, ... s (at most
    `max_delay_s`) while it raises `Unreachable`, for `timeout_s` in all. `setting` names the
    option that gave the address, for the final error."""
    started = time.monotonic()
    delay = first_delay_s
    attempts = 0
    while True:
        attempts += 1
        try:
            return attempt(max(0.0, started + timeout_s - time.monotonic()))
        except (KafkaUnreachable, RedisUnreachable) as e:
            waited = time.monotonic() - started
            if waited >= timeout_s:
                tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                reason = f"{e.reason}; gave up after {waited:.0f} s, {tries}"
                raise type(e)(e.address, reason, setting) from e
            pause = min(delay, timeout_s - waited)
            log.warning(
                "waiting for %s at %s (attempt %d, next in %s s): %s",
                e.what,
                e.address,
                attempts,
                f"{pause:.0f}" if pause >= 1 else f"{pause:.1f}",
                e.reason,
            )
            if _sleep(pause, should_stop):
                raise Stopped(f"stopped while waiting for {e.what} at {e.address}") from e
            delay = min(2 * delay, max_delay_s)


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> bool:
    """Sleep, checking `should_stop` every 0.1 s; whether it asked to stop."""
    deadline = time.monotonic() + seconds
    while not should_stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.1, left))
    return True
