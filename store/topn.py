"""Precomputed top-N lists: a user's best N items as JSON, read by any client with one HGET.

The writer computes them on the version's own table (what `Reader.recommend` scores, so the
scores match a reader's to float precision), for the users active since the previous version;
the other users' lists are carried over with the hash (`COPY`), as their vectors are.

>>> encode([{"item": "i7", "score": 2.5}])
b'[{"item":"i7","score":2.5}]'
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import numpy as np

from store.cache import Copy
from store.table import top_rows

_BATCH = 32  # users scored per matrix product (32 x 1M float32 = 128 MB of scores)


_JSON = msgspec.json.Encoder()  # ~10x json.dumps: the lists are most of a top-N publish's work


def encode(recs: list[dict[str, str | float]]) -> bytes:
    return _JSON.encode(recs)


def lists(copy: Copy, users: np.ndarray, n: int, exact: bool) -> Iterator[bytes]:
    """Each user's top-n as JSON, in order: from the index when the copy has one and not
    `exact`, else by a batched exact scan."""
    table = copy.table
    if copy.ivf is not None and not exact:
        for lo in range(0, len(users), 1024):
            found = copy.ivf.top_k_many(
                table.matrix, users[lo : lo + 1024], n, copy.meta.nprobe, table.holes
            )
            for rows, scores in found:
                yield encode(table.answer(rows, scores))
        return
    for lo in range(0, len(users), _BATCH):
        scores = users[lo : lo + _BATCH] @ table.matrix.T
        if len(table.holes):
            scores[:, table.holes] = -np.inf
        for row in scores:
            best = top_rows(row, min(n, len(row)))
            best = best[row[best] > -np.inf]
            yield encode(table.answer(best, row[best]))
