"""Query and item features from an event's `context`: hashed categoricals, normalised numbers.

`--context-fields device,hour,price:num`: each field is categorical (hashed into
`--feature-buckets` rows of its own embedding table) unless marked `:num` (a number, normalised
by a running mean and standard deviation). `--item-features item_category`: context fields that
describe the *item*; each item row remembers its latest values, and the item's vector becomes
V_j + Σ_f F_f[bucket], so a brand-new item starts near items that share its features.
Unknown fields are ignored; a missing or mistyped value contributes nothing (row -1, value 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from store.features import bucket_of
from trainer.core.fields import FieldSpec, parse_fields
from trainer.core.state import Arrays, Meta, as_numpy, copied

__all__ = ["MISSING", "ContextEncoder", "FieldSpec", "ItemFeatures", "parse_fields"]

MISSING = -1


class ContextEncoder:
    """contexts → (categorical rows (B, n_cat), normalised numbers (B, n_num))."""

    def __init__(self, fields: tuple[FieldSpec, ...], buckets: int) -> None:
        self.cat = [f.name for f in fields if f.kind == "cat"]
        self.num = [f.name for f in fields if f.kind == "num"]
        self.buckets = buckets
        # Welford running mean/variance per numeric field
        self.count = np.zeros(len(self.num))
        self.mean = np.zeros(len(self.num))
        self.m2 = np.zeros(len(self.num))

    def encode(
        self, contexts: Sequence[dict[str, Any]], learn: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        b = len(contexts)
        rows = np.full((b, len(self.cat)), MISSING, dtype=np.int64)
        for f, name in enumerate(self.cat):
            for k, ctx in enumerate(contexts):
                v = ctx.get(name)
                if isinstance(v, str | int | float) and not isinstance(v, bool):
                    rows[k, f] = bucket_of(name, v, self.buckets)
        raw = np.full((b, len(self.num)), np.nan)
        for f, name in enumerate(self.num):
            for k, ctx in enumerate(contexts):
                v = ctx.get(name)
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    raw[k, f] = v
        if learn:
            self._observe(raw)
        return rows, self.normalise(raw)

    def _observe(self, raw: np.ndarray) -> None:
        """Fold a batch into the running mean/variance (Chan et al.'s parallel update: one
        numpy pass per field and batch, not a Python step per value)."""
        for f in range(raw.shape[1]):
            x = raw[~np.isnan(raw[:, f]), f]
            if len(x) == 0:
                continue
            n_a, n_b = self.count[f], float(len(x))
            mean_b = float(x.mean())
            delta = mean_b - self.mean[f]
            total = n_a + n_b
            self.mean[f] += delta * n_b / total
            self.m2[f] += float(((x - mean_b) ** 2).sum()) + delta**2 * n_a * n_b / total
            self.count[f] = total

    def std(self) -> np.ndarray:
        var = np.where(self.count > 1, self.m2 / np.maximum(self.count - 1, 1), 1.0)
        return np.sqrt(np.maximum(var, 1e-12))

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mean) / self.std()
        return np.clip(np.nan_to_num(z, nan=0.0), -5, 5).astype(np.float32)

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        meta = {"count": self.count.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist()}
        return {}, meta

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        self.count = np.array(meta["count"], dtype=np.float64)
        self.mean = np.array(meta["mean"], dtype=np.float64)
        self.m2 = np.array(meta["m2"], dtype=np.float64)


class ItemFeatures:
    """Each item row's latest feature buckets (rows, n_fields), MISSING where never seen."""

    def __init__(self, fields: tuple[FieldSpec, ...], buckets: int, capacity: int = 1024) -> None:
        self.fields = [f.name for f in fields]
        self.encoder = ContextEncoder(tuple(FieldSpec(f) for f in self.fields), buckets)
        self.rows = np.full((capacity, len(self.fields)), MISSING, dtype=np.int64)
        self.used = 0  # item rows in use

    def ensure(self, n: int) -> None:
        self.used = max(self.used, n)
        if n > len(self.rows):
            grown = np.full((max(n, 2 * len(self.rows)), len(self.fields)), MISSING, np.int64)
            grown[: len(self.rows)] = self.rows
            self.rows = grown

    def observe(self, items: np.ndarray, contexts: Sequence[dict[str, Any]]) -> None:
        if not self.fields:
            return
        self.ensure(int(items.max()) + 1)
        buckets, _ = self.encoder.encode(contexts)
        seen = buckets != MISSING
        for f in range(len(self.fields)):
            self.rows[items[seen[:, f]], f] = buckets[seen[:, f], f]

    def reset(self, items: np.ndarray) -> None:
        if len(items):
            self.rows[items] = MISSING

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        return {"rows": copied(self.rows[: self.used], copy)}, {}

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        rows = as_numpy(arrays["rows"])
        self.ensure(len(rows))
        self.rows[: len(rows)] = rows
