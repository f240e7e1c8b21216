"""Which versions the writer may delete (pure logic; the writer does the deleting).

A version stays while it is current, among the newest `keep`, or retired (replaced as current)
less than `grace_ms` ago: a reader that read the pointer just before the flip may still be
reading it. A version that was never current was never read and can go at once. Keys of a
version nobody recorded are leftovers of a publish that died before its flip; those older than
the current version go too (newer ones may belong to a publish still under way). A version in
the chain of one that stays (the full version and deltas a delta is made of) stays too.

>>> expired(recorded={1, 2, 3}, retired={1: 0, 2: 9_000}, current=3, present={1, 2, 3, 0},
...         keep=1, grace_ms=5_000, now_ms=10_000)
[0, 1]
>>> expired(recorded={1, 2, 3}, retired={1: 0, 2: 9_000}, current=3, present={1, 2, 3, 0},
...         keep=1, grace_ms=5_000, now_ms=10_000, chains={3: [3, 2, 1], 2: [2, 1]})
[0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

# the writer's defaults (`recstream publish --keep --grace`)
KEEP = 2  # versions kept besides those within their grace period
GRACE_S = 60.0  # a replaced version is deleted no sooner than this


def expired(
    *,
    recorded: Set[int],
    retired: Mapping[int, int],
    current: int | None,
    present: Set[int],
    keep: int,
    grace_ms: float,
    now_ms: int,
    chains: Mapping[int, Sequence[int]] | None = None,
) -> list[int]:
    """Versions to delete, oldest first.

    recorded: versions in `{ns}:versions`; retired: version → ms it stopped being current;
    present: versions that have keys; keep: how many of the newest recorded versions to keep;
    chains: version → the versions its rows are made of (itself first).
    """
    kept = set(sorted(recorded)[-keep:]) if keep > 0 else set()
    if current is not None:
        kept.add(current)
    doomed = []
    for version in sorted(recorded | present):
        if version in kept:
            continue
        if version in recorded:
            since = retired.get(version)
            if since is not None and now_ms - since < grace_ms:
                continue
        elif current is None or version > current:
            continue
        doomed.append(version)
    chains = chains or {}
    staying = (recorded | present) - set(doomed)
    needed = {c for v in staying for c in chains.get(v, ())}
    return [v for v in doomed if v not in needed]
