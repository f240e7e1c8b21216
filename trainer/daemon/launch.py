"""`recstream train --workers N`: the command as N ranks of one group on this host.

This process starts `torchrun --standalone` as its child, in a session of its own, and stays
as the group's supervisor: SIGTERM or SIGINT here goes to the ranks themselves, which agree on
a last step, write the group's final checkpoint, commit and exit 0, so torchrun ends with 0
too (torchrun stopped by a signal would end its ranks the same way but exit 1 with a
traceback). torchrun restarts the whole group, at most `MAX_RESTARTS` times, when a rank dies;
it dies with this process (PR_SET_PDEATHSIG), and the ranks with it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from store.child import die_with_parent

log = logging.getLogger(__name__)

MAX_RESTARTS = 3


def torchrun_command(workers: int, argv: list[str]) -> list[str]:
    """torchrun running `python -m trainer *argv` as `workers` ranks on this host.

    >>> torchrun_command(2, ["train", "--group", "g"])[-6:]
    ['--max-restarts=3', '-m', 'trainer', 'train', '--group', 'g']
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={workers}", f"--max-restarts={MAX_RESTARTS}",
            "-m", "trainer", *argv]  # fmt: skip


def run_group(workers: int, argv: list[str]) -> int:
    """Run the group to its end; torchrun's exit code (0 after a stop by signal)."""
    cmd = torchrun_command(workers, argv)
    log.info("train: %d workers: %s", workers, " ".join(cmd))
    # a store per round: torchrun's shared rendezvous store outlives a restart with the old
    # ranks' addresses in it, and the new ranks connect to those (see trainer.daemon.group)
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    # torchrun dies with this process: SIGTERM, so it stops its ranks first
    die = functools.partial(die_with_parent, signal.SIGTERM)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die)

    def stop(signum: int, _frame: FrameType | None) -> None:
        ranks = _children(proc.pid)
        log.info("train: %s: stopping %d ranks", signal.Signals(signum).name, len(ranks))
        if not ranks:  # still in the rendezvous: nothing trained in this round yet
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rc = proc.wait()
    return rc if rc >= 0 else 1


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc): torchrun's ranks."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out
