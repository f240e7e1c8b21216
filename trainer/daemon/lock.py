"""One active trainer per checkpoint directory: an exclusive lock, and standbys that wait on it.

The lock is `flock(2)` on ``CHECKPOINT_DIR/.trainer.lock``: the kernel releases it when its
holder exits in any way, SIGKILL included, so a standby takes over without a stale-lock timeout.
flock is local to one machine (on NFS it does not exclude a trainer on another host): keep the
checkpoint directory on a local disk, or on a volume only one host mounts at a time.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> first, second = DirectoryLock(d), DirectoryLock(d)
>>> first.try_acquire(), second.try_acquire()
(True, False)
>>> first.release(); second.try_acquire()
True
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from trainer.errors import CheckpointError

LOCK_NAME = ".trainer.lock"


class DirectoryLock:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process holds it now."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CheckpointError(
                f"cannot open the trainer lock {self.path}: {e}; check the checkpoint "
                "directory's permissions"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        who = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since_ms": time.time_ns() // 10**6,
        }
        try:  # who holds it, for the standby's log line; the lock itself is the flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(who).encode(), 0)
        except OSError:
            pass
        return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (best effort)."""
        try:
            who = json.loads(self.path.read_text())
            return f"pid {who['pid']} on {who['host']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
