"""Gravity (Krichene et al., ICLR 2019): a penalty on the mean squared score of all pairs.

    G(Ψ, V) = λ/(|Q||V|) Σ_i Σ_j (ψ_i·V_j)² = λ/(|Q||V|) ⟨ΨᵀΨ, VᵀV⟩

computed from two d×d Gramians, never from the pairs. Ψ is the batch's queries. VᵀV over the
whole item table is *maintained*, exactly: after each step the touched rows' outer products are
swapped (old out, new in), and the sum is recomputed from scratch every `refresh` updates to
shed float drift. That costs O(k·d²) per step for k touched rows instead of O(n·d²).

The gradient reaches ψ exactly (through the full VᵀV). For V it would touch every row every
step; instead the rows of this step (positives, negatives, histories) receive the gradient of
λ/(|Q||T|) ⟨ΨᵀΨ, V_Tᵀ V_T⟩, the same mean over their own rows, so the update stays sparse.
"""

from __future__ import annotations

import torch

from trainer.core.state import Arrays, Meta, as_tensor


class ItemGramian:
    def __init__(self, dim: int, refresh: int = 512) -> None:
        self.gram = torch.zeros(dim, dim, dtype=torch.float64)
        self.refresh = refresh
        self._updates = 0
        self.rows = 0

    def recompute(self, weight: torch.Tensor) -> None:
        w = weight.double()
        self.gram = w.T @ w
        self.rows = weight.shape[0]
        self._updates = 0

    def replace(self, old: torch.Tensor, new: torch.Tensor, table: torch.Tensor, rows: int) -> None:
        """Rows changed from `old` to `new` (unique rows); `table[:rows]` is the whole table now."""
        self._updates += 1
        if self._updates >= self.refresh or rows < self.rows:
            self.recompute(table[:rows])
            return
        o, n = old.double(), new.double()
        self.gram += n.T @ n - o.T @ o
        if rows > self.rows:  # rows born this step but not touched by it (none today): add them
            self.rows = rows

    def matrix(self) -> torch.Tensor:
        return self.gram.float()

    def state(self) -> tuple[Arrays, Meta]:
        return {"gram": self.gram.clone()}, {"rows": self.rows, "updates": self._updates}

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        if "gram" not in arrays:  # recstream 0.1 kept no Gramian: the next step recomputes it
            self.rows = 0
            return
        self.gram = as_tensor(arrays["gram"]).clone()
        self.rows, self._updates = int(meta["rows"]), int(meta["updates"])


def gravity_penalty(
    psi: torch.Tensor,
    item_gram: torch.Tensor,
    n_items: int,
    touched: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """λ·(mean squared score of the batch's queries over all items), with the sparse V gradient.

    psi (B, d) with grad; item_gram (d, d) constant; touched (T, d) rows of V with grad.
    """
    b = psi.shape[0]
    query_gram = psi.T @ psi
    to_queries = (query_gram * item_gram).sum() / (b * max(n_items, 1))
    to_items = (query_gram.detach() * (touched.T @ touched)).sum() / (b * max(touched.shape[0], 1))
    return weight * (to_queries + to_items)
