"""The query tower as published: a spec plus weights, evaluated with numpy.

A service that meets a user the trainer never saw (or saw a minute ago) computes ψ(x) from the
user's recent items and context, exactly as the trainer does, without torch:

    x = [0 (no user embedding) | mean of the recent items' vectors | one embedding per
         categorical context field (hashed as store.features.bucket_of) | normalised numbers]
    ψ = MLP(x)            (ReLU between layers, none after the last)
    query = [ψ, 1]        (the 1 meets the item's bias: score = query · item vector)

The recent items' vectors are the published item vectors without their last (bias) entry.
Serialised as safetensors bytes, the spec as JSON in the header: no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from safetensors.numpy import load, save

from store.errors import StoreError
from store.features import bucket_of

SPEC_KEY = "recstream-tower"


@dataclass(frozen=True)
class QueryTower:
    dim: int  # ψ's size; published vectors have dim + 1 entries
    history: int  # how many recent items the tower averages
    context: list[dict[str, Any]] = field(default_factory=list)  # {"field", "buckets"}
    numeric: list[dict[str, Any]] = field(default_factory=list)  # {"field", "mean", "std"}
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # context{k}, layer{k}.w/.b
    layers: int = 1
    history_decay: float = 1.0  # weight of an item per step back in time (1: a plain mean)
    activity: bool = False  # the trainer's activity features follow the numeric context

    def query(self, recent: np.ndarray, context: Mapping[str, Any] | None = None) -> np.ndarray:
        """[ψ, 1] for a user with item vectors `recent` (m, dim+1 or dim), oldest first."""
        ctx = context or {}
        count = len(recent)  # the user's items so far, for the activity features
        parts = [np.zeros(self.dim, np.float32)]
        recent = recent[-self.history :, : self.dim] if self.history else recent[:0, : self.dim]
        if len(recent):
            w = np.power(self.history_decay, np.arange(len(recent))[::-1], dtype=np.float64)
            parts.append((w @ recent / w.sum()).astype(np.float32))
        else:
            parts.append(np.zeros(self.dim, np.float32))
        for k, spec in enumerate(self.context):
            value = ctx.get(spec["field"])
            table = self.weights[f"context{k}"]
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                parts.append(table[bucket_of(spec["field"], value, spec["buckets"])])
            else:
                parts.append(np.zeros(self.dim, np.float32))
        nums = []
        for spec in self.numeric:
            value = ctx.get(spec["field"])
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and np.isfinite(value)
            )
            z = (float(value) - spec["mean"]) / spec["std"] if ok else 0.0  # type: ignore[arg-type]
            nums.append(min(max(z, -5.0), 5.0))
        if self.activity:  # no known gap (0, 0), then log(1 + items so far), as trained
            nums += [0.0, 0.0, float(np.log1p(count))]
        x = np.concatenate([*parts, np.array(nums, np.float32)]).astype(np.float32)
        for k in range(self.layers):
            x = self.weights[f"layer{k}.weight"] @ x + self.weights[f"layer{k}.bias"]
            if k < self.layers - 1:
                x = np.maximum(x, 0.0)
        return np.append(x, np.float32(1.0)).astype(np.float32)

    def to_bytes(self) -> bytes:
        spec = {
            "dim": self.dim,
            "history": self.history,
            "context": self.context,
            "numeric": self.numeric,
            "layers": self.layers,
            "history_decay": self.history_decay,
            "activity": self.activity,
        }
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()}
        return save(arrays, metadata={SPEC_KEY: json.dumps(spec)})

    @classmethod
    def from_bytes(cls, blob: bytes) -> QueryTower:
        try:
            weights = load(blob)
            # safetensors layout: 8-byte little-endian header size, then the JSON header
            header_len = int.from_bytes(blob[:8], "little")
            header = json.loads(blob[8 : 8 + header_len])
            spec = json.loads(header["__metadata__"][SPEC_KEY])
        except Exception as e:
            raise StoreError(f"the published query tower cannot be read: {e}") from e
        return cls(weights=dict(weights), **spec)
