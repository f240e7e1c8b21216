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

import contextlib
import ctypes
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux
    PR_SET_PDEATHSIG; nothing elsewhere, or where it cannot be set). It may also serve as a
    `preexec_fn`, for a child to die with the process that starts it."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, sig)  # PR_SET_PDEATHSIG


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
