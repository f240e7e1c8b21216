"""The state protocol: how every stateful part of the learner saves and restores itself.

A part's `state()` returns ``(arrays, meta)``: named numpy arrays or torch tensors, and a
JSON-able dict. `load_state(arrays, meta)` restores it exactly, so that a resumed learner makes
the same steps as one that never stopped, copying into the part's own buffers where they fit
(fresh memory is slow on some hosts; a twin reloaded at every checkpoint reuses its memory).
`state(copy=False)` returns views of the live arrays instead of copies, valid until the part
changes next: for copying into a twin at once (`Learner.copy_into`), never for keeping.
The learner composes its parts' states under fixed names (`Learner.state`); the daemon
writes them into a checkpoint (safetensors + JSON) without knowing what they hold.

    >>> arrays, meta = {"a": np.zeros(2)}, {"n": 1}
    >>> sorted(prefixed(arrays, "part.")), unprefixed({"part.a": 1, "other.b": 2}, "part.")
    (['part.a'], {'a': 1})
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import numpy as np
import torch

Array = np.ndarray | torch.Tensor
Arrays = dict[str, Array]
Meta = dict[str, Any]


class Stateful(Protocol):
    def state(self, copy: bool = True) -> tuple[Arrays, Meta]: ...

    def load_state(self, arrays: Arrays, meta: Meta) -> None: ...


def prefixed(arrays: Arrays, prefix: str) -> Arrays:
    """`arrays` with every name under `prefix`."""
    return {prefix + k: v for k, v in arrays.items()}


def unprefixed(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of `arrays` under `prefix`, with the prefix taken off."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def as_numpy(a: Array) -> np.ndarray:
    """A numpy view of a saved array (checkpoints load as torch tensors)."""
    return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def as_tensor(a: Array) -> torch.Tensor:
    """A contiguous tensor of a part's array, for the checkpoint file."""
    if isinstance(a, torch.Tensor):
        return a.detach().contiguous()
    return torch.from_numpy(np.ascontiguousarray(a))


def copied(a: np.ndarray, copy: bool) -> np.ndarray:
    """`a`, or a copy of it (what `state(copy=...)` returns)."""
    return a.copy() if copy else a


def refill(buffer: np.ndarray, values: Array, fill: Any = 0) -> np.ndarray:
    """`values` in `buffer` when it is big enough (the rest set to `fill`), else in a new
    array twice their size: load_state's way to reuse memory."""
    v = as_numpy(values)
    if buffer.shape[1:] != v.shape[1:] or buffer.dtype != v.dtype or len(buffer) < len(v):
        buffer = np.full((max(2 * len(v), 1024), *v.shape[1:]), fill, dtype=v.dtype)
    buffer[: len(v)] = v
    buffer[len(v) :] = fill
    return buffer


def jsonable(meta: Meta) -> Meta:
    """`meta` as JSON will hold it (numpy scalars as Python numbers; numpy generator states
    keep their 128-bit integers exactly)."""
    return json.loads(json.dumps(meta, default=lambda x: x.item() if hasattr(x, "item") else x))
