"""Named fault points for the fault tests: the process kills or pauses itself at one of them.

Armed only in test mode (`recstream train --test-mode`, `recstream publish --test-mode`), from
the environment variable ``RECSTREAM_FAULT``: a comma-separated list of ``POINT[@N][:ACTION]``,
where N (default 1) is which hit of the point fires, and ACTION is ``kill`` (SIGKILL, the
default: no handler, no flush, no atexit, as a power cut would) or ``pause=SECONDS``.

Points: ``after-step`` (a batch was learned, before anything else), ``checkpoint-write`` (the
state file of a checkpoint is on disk in its temp directory, before the manifest and the
rename), ``after-checkpoint`` (a checkpoint is complete, its offsets not yet committed),
``publish-written`` (a version's data is in Redis, its meta not yet), ``publish-verified``
(the version verified, the pointer not yet moved), ``slow-step`` (before a step; use pause).

>>> arm("after-step@3,publish-written:pause=0.5")
>>> sorted(_ARMED)
['after-step', 'publish-written']
>>> disarm()
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV = "RECSTREAM_FAULT"
POINTS = frozenset(
    {
        "after-step",
        "checkpoint-write",
        "after-checkpoint",
        "publish-written",
        "publish-verified",
        "slow-step",
    }
)


@dataclass
class _Fault:
    nth: int
    pause_s: float | None  # None: SIGKILL
    hits: int = 0


_ARMED: dict[str, _Fault] = {}


def arm(spec: str | None = None) -> None:
    """Arm the faults of `spec` (default: $RECSTREAM_FAULT); a bad spec is a ValueError."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    _ARMED.clear()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        head, _, action = part.partition(":")
        point, _, nth = head.partition("@")
        if point not in POINTS:
            raise ValueError(f"{ENV}: unknown fault point {point!r}; known: {sorted(POINTS)}")
        pause = None
        if action.startswith("pause="):
            pause = float(action[len("pause=") :])
        elif action not in ("", "kill"):
            raise ValueError(f"{ENV}: unknown action {action!r}; use kill or pause=SECONDS")
        _ARMED[point] = _Fault(int(nth or 1), pause)
    if _ARMED:
        log.warning("test mode: fault injection armed: %s", spec)


def disarm() -> None:
    _ARMED.clear()


def hit(point: str) -> None:
    """Fire the fault armed at `point`, if this is its N-th hit; otherwise do nothing."""
    fault = _ARMED.get(point)
    if fault is None:
        return
    fault.hits += 1
    if fault.hits != fault.nth:
        return
    pause = fault.pause_s
    if pause is None:
        print(f"FAULT {point}@{fault.nth}: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # the signal is delivered before this returns
        return
    print(f"FAULT {point}@{fault.nth}: pausing {pause} s", file=sys.stderr, flush=True)
    time.sleep(pause)
