"""Progressive (test-then-train) quality: each event is scored before the model learns it.

Pure maths plus river's running statistics. The same code scores every model in the
benchmarks: give it each query's scores over the whole catalogue and the true item.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import torch

from trainer.core.state import Arrays, Meta

log = logging.getLogger(__name__)

MISS = np.iinfo(np.int64).max  # the rank of an item the model cannot score (unknown to it)


def ranks_of(scores: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """0-based rank of each target among all items, ties counted against it: the number of
    other items that score at least as high.

    scores (B, n_items); targets (B,) item rows, -1 for an item the model does not know (MISS).
    Exact, so recall@k = mean(rank < k) is what an exact top-k would give when ties are broken
    against the target: a model that scores everything alike (a cold user, an empty model)
    earns no hits from the tie.
    >>> ranks_of(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([2])).tolist()
    [1]
    >>> ranks_of(torch.tensor([[0.5, 0.9, 0.5, 0.5]]), torch.tensor([2])).tolist()
    [3]
    """
    known = targets >= 0
    rank = np.full(len(targets), MISS, dtype=np.int64)
    if known.any():
        rows = torch.nonzero(known).squeeze(1)
        s = scores[rows]
        target_scores = s.gather(1, targets[rows].unsqueeze(1))
        rank[rows.numpy()] = ((s >= target_scores).sum(1) - 1).numpy()
    return rank


class Progressive:
    """Running and rolling recall@k and loss, with a drift detector on the loss.

    `update(ranks, loss)` once per evaluated batch; `figures()` for logs and `status`. river is
    imported when the figures are first needed (its drift package takes seconds to import,
    which a trainer's start need not wait for; `warm_up` imports it on a thread meanwhile).
    """

    def __init__(self, ks: tuple[int, ...] = (10, 100), window: int = 20_000) -> None:
        self.ks = ks
        self.window = window
        self.drifts = 0
        self._made = False

    def __getattr__(self, name: str) -> Any:
        if name in ("running", "rolling", "loss", "loss_rolling", "detector") and not self._made:
            self._make()
            return getattr(self, name)
        raise AttributeError(name)

    def _make(self) -> None:
        from river import drift, stats, utils

        ks, window = self.ks, self.window
        self.running = {k: stats.Mean() for k in ks}
        self.rolling = {k: utils.Rolling(stats.Mean, window_size=window) for k in ks}
        self.loss = stats.Mean()
        self.loss_rolling = utils.Rolling(stats.Mean, window_size=max(1, window // 256))
        self.detector = drift.ADWIN()
        self._made = True

    def update(self, ranks: np.ndarray, loss: float | None = None) -> bool:
        """Add a batch's ranks (and its training loss); True when drift was detected."""
        for k in self.ks:
            hits = (ranks < k).astype(np.float64)
            running, rolling = self.running[k], self.rolling[k]
            for h in hits:
                running.update(h)
                rolling.update(h)
        if loss is None:
            return False
        self.loss.update(loss)
        self.loss_rolling.update(loss)
        self.detector.update(loss)
        if self.detector.drift_detected:
            self.drifts += 1
            log.warning("drift detected in the training loss (now %.4f)", loss)
            return True
        return False

    @property
    def evaluated(self) -> int:
        return int(self.running[self.ks[0]].n)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"evaluated": self.evaluated, "drifts": self.drifts}
        for k in self.ks:
            out[f"recall@{k}"] = round(self.running[k].get(), 5)
            out[f"recall@{k}_rolling"] = round(self.rolling[k].get(), 5)  # type: ignore[operator]
        out["loss"] = round(self.loss.get(), 5)
        out["loss_rolling"] = round(self.loss_rolling.get(), 5)  # type: ignore[operator]
        return out

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        """Running figures survive a restart; rolling windows and the detector start afresh."""
        meta = {
            "running": {str(k): [self.running[k].n, self.running[k].get()] for k in self.ks},
            "loss": [self.loss.n, self.loss.get()],
            "drifts": self.drifts,
        }
        return {}, meta

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        for k in self.ks:
            n, mean = meta["running"].get(str(k), [0, 0.0])
            self.running[k].n, self.running[k]._mean = n, mean
        self.loss.n, self.loss._mean = meta["loss"]
        self.drifts = int(meta["drifts"])


def warm_up() -> threading.Thread:
    """Import river on a thread of its own (a trainer starts it while it joins its group)."""

    def load() -> None:
        from river import drift, stats, utils  # noqa: F401

    thread = threading.Thread(target=load, name="recstream-warm-up", daemon=True)
    thread.start()
    return thread


def folding_rate(top_groups: np.ndarray, touched: list[set[int]]) -> float:
    """Share of recommendations from a group the user never touched (spurious: "folding").

    top_groups (U, k) the group of each recommended item; touched[u] the groups user u
    interacted with. 0 = no folding; on K equal groups, random ranking gives ~(K-1)/K.
    >>> folding_rate(np.array([[0, 1], [2, 2]]), [{0}, {2}])
    0.25
    """
    if len(top_groups) == 0:
        return 0.0
    spurious = [
        [g not in seen for g in row] for row, seen in zip(top_groups.tolist(), touched, strict=True)
    ]
    return float(np.mean(spurious))
