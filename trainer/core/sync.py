"""Several learners, one model: what they share each step, behind one verb.

A learner alone shares with nobody (`Alone`). In a group of W (one per process, see
`trainer.daemon.group`), every step each learner `share`s what it has and receives everyone's,
in rank order, the same on every rank: first the step's events (so each takes the events of
the users it owns, and all of them update the item side — vocabulary, counts, sampler — with
every event, in one order), then its gradients of the item side and of the tower (so all of
them apply the same sums). The item side and the tower stay identical on every rank without
ever being sent; the user side lives with its owner (`owner`).

    >>> Alone().share({"x": 1})
    [{'x': 1}]
    >>> owner(["alice", "bob", "alice"], 2).tolist() == [owner(["alice"], 2)[0]] * 1 + [
    ...     owner(["bob"], 2)[0], owner(["alice"], 2)[0]]
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from trainer.core.sketch import stable_hash


class Sync(Protocol):
    rank: int
    world: int

    def share(self, mine: Any) -> list[Any]:
        """Every rank's `mine`, in rank order (a collective: every rank calls it)."""
        ...


class Alone:
    rank, world = 0, 1

    def share(self, mine: Any) -> list[Any]:
        return [mine]


def owner(users: Sequence[str], world: int) -> np.ndarray:
    """The rank that owns each user: a stable hash, so a restart with another W re-deals."""
    if world == 1:
        return np.zeros(len(users), np.int64)
    return (stable_hash(users) % np.uint64(world)).astype(np.int64)
