"""Child processes: stopping one politely first, then for sure; a local server run as one.

The local broker, the local redis-server and the trainer's writer process all stop the same
way: SIGTERM, a grace period, then SIGKILL. A child frozen with SIGSTOP (fault tests freeze the
broker) would hold SIGTERM until the grace period ran out, so it is resumed first.
The two local servers (`stream.LocalBroker`, `store.RedisServer`) share `ChildServer`: stop,
start again, or use them in a ``with`` block.

It lives in store, the package that imports nothing else of ours (downstream services import
store alone; tests/test_store_snapshot.py checks it), so that stream and the trainer can use it.
"""

from __future__ import annotations

import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self


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


class ChildServer(ABC):
    """A server this process runs as its child, for tests and demos; `close()` at the end of a
    ``with`` block."""

    @abstractmethod
    def start(self) -> None:
        """Start the server (again), returning once it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server (`stop_child`); `start()` may bring it back."""

    def close(self) -> None:
        """Stop for good (a server that made files also removes them)."""
        self.stop()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
