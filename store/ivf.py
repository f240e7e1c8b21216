"""The approximate index: IVF over inner product, trained by the writer, published, loaded.

For a full version the writer trains `nlist` centroids (k-means on a sample, faiss), assigns
every row to the centroid with the highest inner product (its *list*), measures on a sample of
its own users which `nprobe` (lists scanned per query) reaches the target recall@100 against the
exact top-100, and publishes the centroids, every row's list and nprobe with the version; a
delta carries the lists of its own rows. A reader lays the rows it loaded into those lists (no
training, no assignment: ~O(rows) copying) and moves only a delta's rows when it switches.
The inverted lists hold float16 copies (half the table's bytes); the candidates are re-scored
exactly from the table, so an approximate answer's scores are the exact scores of what it found.
The `HEAD` rows with the highest offset (bias + popularity prior, the last column) join every
query's candidates: an item everyone scores high through its offset alone sits in whichever
list its direction chose, which a query probing a few lists may never scan.

faiss-cpu is optional (the `serving` extra): without it versions carry no index and
`Reader.recommend(..., exact=False)` raises.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from store.errors import StoreError
from store.table import top_rows

K = 100  # recall@K is what the writer calibrates for
HEAD = 256  # rows with the highest offset (last column) scored with every approximate query
MIN_ITEMS = 20_000  # `index="auto"` indexes tables at least this large
_ASSIGN_BATCH = 65_536


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise StoreError(
            "the approximate index needs faiss-cpu: pip install 'recstream[serving]' "
            "(or use exact top-k)"
        ) from e
    return faiss


def available() -> bool:
    try:
        faiss_module()
    except StoreError:
        return False
    return True


def nlist_for(rows: int) -> int:
    """Lists for a table of `rows`: ~4·√rows, a power of two, at most 4096 (training and
    assignment cost grow with it: 10M rows x 4096 lists is ~5 TFLOP), at least 39 rows each.

    >>> nlist_for(100_000), nlist_for(1_000_000), nlist_for(10_000_000), nlist_for(300)
    (1024, 4096, 4096, 7)
    """
    target = min(4096, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(rows)))))
    return int(max(1, min(target, rows // 39)))


def train(matrix: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """`nlist` centroids (nlist, dim) for the rows of `matrix` (k-means on ≤ 64·nlist rows)."""
    faiss = faiss_module()
    d = matrix.shape[1]
    rng = np.random.default_rng(seed)
    take = min(len(matrix), 32 * nlist)
    sample = matrix[np.sort(rng.choice(len(matrix), take, replace=False))]
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter, ivf.cp.seed = 10, seed
    ivf.cp.max_points_per_centroid, ivf.cp.min_points_per_centroid = 32, 1
    ivf.train(np.ascontiguousarray(sample))
    return np.ascontiguousarray(quantizer.reconstruct_n(0, nlist), np.float32)


def assign(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The list (centroid of highest inner product) of each row, int32: a matrix product per
    batch (faster here than an HNSW graph of the centroids, 2 s vs 6.5 s for 200k x 4096)."""
    faiss = faiss_module()
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(np.ascontiguousarray(centroids, np.float32))
    out = np.empty(len(vectors), np.int32)
    for lo in range(0, len(vectors), _ASSIGN_BATCH):
        _, best = quantizer.search(np.ascontiguousarray(vectors[lo : lo + _ASSIGN_BATCH]), 1)
        out[lo : lo + len(best)] = best[:, 0]
    return out


class IVF:
    """Inverted lists over a table's slots; ids are slots. Not thread-safe for changes: the
    caller keeps searches out while it adds or removes (store.cache does)."""

    def __init__(self, centroids: np.ndarray) -> None:
        faiss = self._faiss = faiss_module()
        nlist, d = centroids.shape
        self.centroids = centroids
        self.quantizer = faiss.IndexFlatIP(d)
        self.quantizer.add(np.ascontiguousarray(centroids, np.float32))
        self.index = faiss.IndexIVFScalarQuantizer(
            self.quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        self.index.is_trained = True  # float16 needs no training; the centroids are given
        self.head = np.empty(0, np.int64)  # slots of the highest offsets

    def set_head(
        self, matrix: np.ndarray, live: np.ndarray, changed: np.ndarray | None = None
    ) -> None:
        """The head: the `HEAD` `live` slots of highest offset; with `changed` (a delta's slots)
        only those and the old head compete (a head item whose offset fell may stay a while:
        an extra candidate, never a missed one)."""
        pool = live if changed is None else np.union1d(self.head[np.isin(self.head, live)], changed)
        if len(pool) > HEAD:
            pool = pool[np.argpartition(-matrix[pool, -1], HEAD)[:HEAD]]
        self.head = np.sort(pool).astype(np.int64)

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    def add(self, vectors: np.ndarray, lists: np.ndarray, slots: np.ndarray) -> None:
        if len(vectors):
            self.index.add_core(
                len(vectors),
                self._faiss.swig_ptr(x := np.ascontiguousarray(vectors, np.float32)),
                self._faiss.swig_ptr(ids := np.ascontiguousarray(slots, np.int64)),
                self._faiss.swig_ptr(lst := np.ascontiguousarray(lists, np.int64)),
            )
            del x, ids, lst  # alive until add_core returned

    def remove(self, slots: np.ndarray) -> None:
        if len(slots):
            self.index.remove_ids(np.ascontiguousarray(slots, np.int64))

    def top_k(
        self,
        matrix: np.ndarray,
        query: np.ndarray,
        k: int,
        nprobe: int,
        masked: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, exact scores) of the best k of 2k + |masked| candidates, best first."""
        extra = 0 if masked is None else len(masked)
        params = self._faiss.SearchParametersIVF(nprobe=max(1, min(nprobe, self.nlist)))
        _, found = self.index.search(query[None], 2 * k + extra, params=params)
        cand = np.union1d(found[0][found[0] >= 0], self.head)
        if masked is not None and extra:
            cand = cand[~np.isin(cand, masked)]
        scores = matrix[cand] @ query
        order = np.lexsort((cand, -scores))[:k]
        return cand[order], scores[order]

    def top_k_many(
        self, matrix: np.ndarray, queries: np.ndarray, k: int, nprobe: int, masked: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`top_k` for many queries at once (one search call: faiss spreads it over threads)."""
        params = self._faiss.SearchParametersIVF(nprobe=max(1, min(nprobe, self.nlist)))
        q = np.ascontiguousarray(queries, np.float32)
        _, found = self.index.search(q, 2 * k + len(masked), params=params)
        out = []
        for row, query in zip(found, q, strict=True):
            cand = np.union1d(row[row >= 0], self.head)
            if len(masked):
                cand = cand[~np.isin(cand, masked)]
            scores = np.einsum("ij,j->i", matrix[cand], query)
            order = np.lexsort((cand, -scores))[:k]
            out.append((cand[order], scores[order]))
        return out


def calibrate(
    ivf: IVF, matrix: np.ndarray, queries: np.ndarray, target: float, k: int = K
) -> tuple[int, float]:
    """The smallest nprobe (1, 2, 4, ...) whose recall@k against exact reaches `target` on
    `queries`, and that recall (nlist, the whole table, if none smaller does)."""
    k = min(k, len(matrix))
    exact = [set(top_rows(matrix @ q, k).tolist()) for q in queries]
    nprobe, recall = 1, 0.0
    while True:
        hits = [
            len(want & set(ivf.top_k(matrix, q, k, nprobe)[0].tolist()))
            for q, want in zip(queries, exact, strict=True)
        ]
        recall = sum(hits) / max(1, k * len(queries))
        if recall >= target or nprobe >= ivf.nlist:
            return nprobe, recall
        nprobe = min(2 * nprobe, ivf.nlist)
