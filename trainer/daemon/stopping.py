"""How a training loop is asked to stop: SIGTERM/SIGINT set a flag, nothing more.

The loop (a single trainer's or a group rank's) checks the flag between batches, finishes its
step, checkpoints and exits; `stop_requested_at` times the shutdown.
"""

from __future__ import annotations

import signal
import time


class StopOnSignal:
    stop_requested: bool = False
    stop_requested_at: float | None = None

    def request_stop(self, *_: object) -> None:
        """Signal-safe: only sets a flag; the loop finishes its batch, checkpoints and exits."""
        if not self.stop_requested:
            self.stop_requested_at = time.monotonic()
        self.stop_requested = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
