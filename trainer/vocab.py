"""Vocabulary: string ids ↔ dense table rows, growing while the stream runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class Vocabulary:
    """Maps ids to rows 0..n-1 in order of first appearance.

    >>> v = Vocabulary()
    >>> v.add(["a", "b", "a"]).tolist()
    [0, 1, 0]
    >>> v.lookup(["b", "zz"]).tolist()
    [1, -1]
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        for i in ids:
            self._rows[i] = len(self._ids)
            self._ids.append(i)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of `ids`, giving new ids the next free rows."""
        rows = self._rows
        out = np.empty(len(ids), dtype=np.int64)
        for k, i in enumerate(ids):
            r = rows.get(i)
            if r is None:
                r = rows[i] = len(self._ids)
                self._ids.append(i)
            out[k] = r
        return out

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of `ids`; -1 where an id is unknown."""
        get = self._rows.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def row(self, id_: str) -> int | None:
        return self._rows.get(id_)

    def ids(self) -> list[str]:
        """All ids, in row order (a copy)."""
        return list(self._ids)

    def id_of(self, row: int) -> str:
        return self._ids[row]
