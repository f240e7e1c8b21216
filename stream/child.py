"""Stopping a child process: politely first, then for sure.

The local broker, the local redis-server and the trainer's writer process all stop the same
way: SIGTERM, a grace period, then SIGKILL. A child frozen with SIGSTOP (fault tests freeze the
broker) would hold SIGTERM until the grace period ran out, so it is resumed first.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from typing import Any


def stop_child(
    proc: subprocess.Popen[Any], grace_s: float, on_kill: Callable[[], None] | None = None
) -> int:
    """SIGCONT and SIGTERM, wait up to `grace_s`, then SIGKILL (calling `on_kill` just before);
    returns the exit code. A child that has already exited is only reaped.

    >>> import sys
    >>> stop_child(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]), 5)
    -15
    """
    proc.send_signal(signal.SIGCONT)  # Popen signals no child that has exited
    proc.terminate()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        if on_kill is not None:
            on_kill()
        proc.kill()
        return proc.wait()
