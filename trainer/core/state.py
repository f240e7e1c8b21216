"""The state protocol: how every stateful part of the learner saves and restores itself.

A part's `state()` returns ``(arrays, meta)``: named numpy arrays or torch tensors, and a
JSON-able dict. `load_state(arrays, meta)` restores it exactly, so that a resumed learner makes
the same steps as one that never stopped. The learner composes its parts' states under fixed
names (`Learner.state`); the daemon writes them into a checkpoint (safetensors + JSON) without
knowing what they hold.

    >>> arrays, meta = {"a": np.zeros(2)}, {"n": 1}
    >>> sorted(prefixed(arrays, "part.")), unprefixed({"part.a": 1, "other.b": 2}, "part.")
    (['part.a'], {'a': 1})
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

Array = np.ndarray | torch.Tensor
Arrays = dict[str, Array]
Meta = dict[str, Any]


class Stateful(Protocol):
    def state(self) -> tuple[Arrays, Meta]: ...

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
