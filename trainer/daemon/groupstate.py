"""A learner's state cut into what a group shares and what each rank owns, and put back together
for any number of ranks.

In a group every rank holds the same item side (vocabulary, item tables, counts, sampler,
tower, ...) and its own user side: its users' vocabulary, rows, histories, activity, its
progressive figures and its own random draws. A group checkpoint keeps the shared part once
and one part per rank; a rank of a group of any size W' takes back the shared part and, from
every part, the users it owns under W' (`trainer.core.sync.owner`), on new rows. Pure: arrays
and JSON in, arrays and JSON out.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from trainer.core.settings import ModelSettings
from trainer.core.state import Arrays, Meta, as_numpy
from trainer.core.sync import owner

_OWN_PREFIXES = ("vocab.users.", "users.", "history.", "activity.", "progressive.")
_OWN_ARRAYS = ("user_active", "rng.users", "rng.hard")
_OWN_META = ("users", "history", "activity", "progressive", "learner_rng")


def _own(key: str) -> bool:
    return key.startswith(_OWN_PREFIXES) or key in _OWN_ARRAYS


def split(arrays: Arrays, meta: Meta) -> tuple[Arrays, Meta, Arrays, Meta]:
    """(shared arrays, shared meta, own arrays, own meta) of one rank's `Learner.state()`."""
    shared = {k: v for k, v in arrays.items() if not _own(k)}
    own = {k: v for k, v in arrays.items() if _own(k)}
    shared_meta = {k: v for k, v in meta.items() if k not in _OWN_META}
    own_meta = {k: v for k, v in meta.items() if k in _OWN_META}
    model = copy.copy(shared_meta.get("model", {}))
    tables = dict(model.get("tables", {}))
    own_meta["user_table"] = tables.pop("users", {})
    shared_meta["model"] = {**model, "tables": tables}
    return shared, shared_meta, own, own_meta


def merge(
    shared: Arrays,
    shared_meta: Meta,
    parts: list[tuple[Arrays, Meta]],
    rank: int,
    world: int,
    settings: ModelSettings,
) -> tuple[Arrays, Meta]:
    """A full learner state for `rank` of a group of `world`: the shared part, and the users
    it owns from every part (`parts` in their old rank order), re-dealt onto new rows."""
    buckets = settings.buckets
    same = len(parts) == world
    keep: list[tuple[int, list[int]]] = []  # (part, its rows kept)
    ids: list[str | None] = [None] * buckets
    for k, (_, meta) in enumerate(parts):
        old = meta["users"]["ids"]
        rows = [r for r, i in enumerate(old) if r >= buckets and i is not None]
        mine = owner([old[r] for r in rows], world) == rank if rows else np.zeros(0, bool)
        rows = [r for r, m in zip(rows, mine.tolist(), strict=True) if m]
        keep.append((k, rows))
        ids += [old[r] for r in rows]

    def rows_of(key: str, fill: float = 0.0) -> np.ndarray:
        """`key` of every part at its kept rows, after `buckets` rows of part 0 (or `fill`)."""
        first = as_numpy(parts[0][0][key]) if key in parts[0][0] else None
        pieces = []
        if buckets:
            head = first[:buckets] if first is not None and len(first) >= buckets else None
            if head is None:
                width = first.shape[1:] if first is not None else ()
                head = np.full(
                    (buckets, *width), fill, dtype=first.dtype if first is not None else np.float32
                )
            pieces.append(head)
        for k, rows in keep:
            pieces.append(as_numpy(parts[k][0][key])[rows])
        return np.concatenate(pieces) if pieces else np.empty(0)

    arrays: Arrays = dict(shared)
    for key in ("vocab.users.last_seen", "users.weight", "users.accum", "history.items",
                "history.next", "activity.last", "activity.count", "user_active"):  # fmt: skip
        if key in parts[0][0]:
            arrays[key] = rows_of(key)
    if "vocab.users.sketch" in parts[0][0]:  # a user's sightings all went to its owner
        arrays["vocab.users.sketch"] = np.maximum.reduce(
            [as_numpy(a["vocab.users.sketch"]) for a, _ in parts]
        )
    own_arrays, own_meta = parts[rank] if same else parts[0]
    fresh = 1000 * rank
    for key, seed in (
        ("rng.users", settings.seed + 7 + fresh),
        ("rng.hard", settings.seed + 3 + fresh),
    ):
        arrays[key] = own_arrays[key] if same else torch.Generator().manual_seed(seed).get_state()
    for key, value in own_arrays.items():
        if key.startswith("progressive."):
            arrays[key] = value
    meta = dict(shared_meta)
    vocab = dict(parts[0][1]["users"])
    vocab.update(
        ids=ids,
        free=[],
        admitted=sum(int(m["users"]["admitted"]) for _, m in parts),
        evicted=sum(int(m["users"]["evicted"]) for _, m in parts),
        sketch_increments=max(int(m["users"].get("sketch_increments", 0)) for _, m in parts),
    )
    meta["users"] = vocab
    pending = [
        (uid, items)
        for _, m in parts
        for uid, items in m["history"].get("pending", [])
        if owner([uid], world)[0] == rank
    ]
    meta["history"] = {"pending": pending}
    meta["activity"] = {"used": len(ids)} if parts[0][1].get("activity") else {}
    meta["progressive"] = own_meta["progressive"]
    if same:
        meta["learner_rng"] = own_meta["learner_rng"]
    else:
        meta["learner_rng"] = np.random.default_rng(settings.seed + 2 + fresh).bit_generator.state
    model = dict(meta.get("model", {}))
    model["tables"] = {**model.get("tables", {}), "users": {"used": len(ids)}}
    meta["model"] = model
    return arrays, meta
