"""A group of trainers that train one model: ranks, their collective, their partitions.

Launched by `torchrun` (its elastic rendezvous sets RANK, WORLD_SIZE, MASTER_ADDR, ...), each
process joins a gloo process group. The learners share through it (`GlooSync`, the core's
`trainer.core.sync.Sync`); rank r reads the topic partitions p with p mod W == r, assigned,
not subscribed (a rank blocked in a collective could not answer a Kafka rebalance, so
torchrun's rendezvous replaces the group protocol; any change of membership restarts every
rank from the last group checkpoint, with the new W). W cannot exceed the partition count.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from store.child import die_with_parent

log = logging.getLogger(__name__)


class GlooSync:
    """`share` as gloo's all_gather of objects (pickled): a few ms per call on loopback."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        self.seconds = 0.0  # in collectives, waiting for the slowest rank included

    def share(self, mine: Any) -> list[Any]:
        import torch.distributed as dist

        t0 = time.perf_counter()
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, mine)
        self.seconds += time.perf_counter() - t0
        return out


@dataclass(frozen=True)
class Membership:
    rank: int
    world: int
    sync: GlooSync

    def partitions(self, count: int) -> list[int]:
        """This rank's partitions of a topic with `count` of them."""
        return [p for p in range(count) if p % self.world == self.rank]


def join(timeout_s: float = 300.0) -> Membership | None:
    """This process's place in its group, from torchrun's environment; None when alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    # a rank whose agent is gone can never be restarted with its group and would hold its
    # partitions back forever; killed with it, nothing is lost (the group resumes from its
    # last checkpoint)
    die_with_parent(signal.SIGKILL)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and rank == 0:
        log.warning(
            "torchrun shares its rendezvous store with the ranks: after a restart the new "
            "ranks can find the old ones' addresses in it and fail to connect (torch 2.13); "
            "set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's environment"
        )
    if not dist.is_initialized():
        joined = threading.Event()
        threading.Thread(
            target=_exit_unless, args=(joined, rank), name="group-join", daemon=True
        ).start()
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        joined.set()
    log.info("rank %d of a group of %d trainers", rank, world)
    return Membership(rank, world, GlooSync(rank, world))


JOIN_S = 60.0


def _exit_unless(joined: threading.Event, rank: int) -> None:
    """Exit 1 when the group's collective is not up within JOIN_S: after the rendezvous the
    ranks only connect to each other, which takes well under a second; a rank stuck there
    (seen once here, after a rank was killed: both new ranks waited in gloo's connect for
    minutes) is restarted by torchrun with the
    whole group rather than left waiting for the collective timeout."""
    if not joined.wait(JOIN_S):
        log.error(
            "rank %d: the group's collective was not up after %.0f s; exiting so that "
            "torchrun restarts the group",
            rank,
            JOIN_S,
        )
        os._exit(1)


def leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
