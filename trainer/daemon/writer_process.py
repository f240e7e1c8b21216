"""`train --redis URL`: the writer (`recstream publish --watch`) as a child process.

The URL and the TLS options reach the child through its environment, never its command line
(which `ps` shows). The child starts with SIGTERM/SIGINT blocked (a signal mask survives exec)
and unblocks them once its handler is in place, so a stop that arrives while it is still
importing gets a final publish instead of killing it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from store.child import stop_child

log = logging.getLogger(__name__)


class WriterProcess:
    def __init__(
        self, checkpoint_dir: Path, namespace: str, redis_url: str, tls: Mapping[str, str]
    ) -> None:
        self.checkpoint_dir = checkpoint_dir
        cmd = [
            sys.executable, "-m", "trainer", "publish", "--watch",
            "--checkpoint-dir", str(checkpoint_dir),
            "--namespace", namespace,
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        env = {**os.environ, "RECSTREAM_REDIS": redis_url}
        for name, value in tls.items():
            env[f"RECSTREAM_REDIS_{name.upper()}"] = value
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._proc = subprocess.Popen(cmd, env=env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        log.info("writer process started (pid %d)", self._proc.pid)

    def stop(self, wait_s: float) -> int:
        """SIGTERM (it publishes the newest checkpoint, then exits); SIGKILL after `wait_s`."""
        code = stop_child(
            self._proc,
            wait_s,
            on_kill=lambda: log.error("writer did not stop within %.0f s; killing it", wait_s),
        )
        if code != 0:
            log.error(
                "the writer exited with code %d: the newest checkpoint may not be published; "
                "`recstream publish --checkpoint-dir %s` publishes it",
                code,
                self.checkpoint_dir,
            )
        return code
