"""Gravity (Krichene et al., ICLR 2019): a penalty on the mean squared score of all pairs.

    G(Ψ, Ṽ) = λ/(|Q||V|) Σ_i Σ_j (ψ_i·Ṽ_j)² = λ/(|Q||V|) ⟨ΨᵀΨ, ṼᵀṼ⟩

computed from two d×d Gramians, never from the pairs. Ψ is the batch's queries; j runs over the
catalogue (admitted items, not shared buckets or free rows) and Ṽ_j is the vector the score
uses (own row + item-feature embeddings). ṼᵀṼ is *maintained*: every change of a catalogue
row's Ṽ — a step's update, an admission, an eviction, new feature values — swaps its outer
product (old out, new in), and the sum is recomputed from scratch every `refresh` swaps, which
sheds float drift and the drift of untouched items whose shared feature embeddings moved.

The gradient reaches ψ exactly (through the full ṼᵀṼ). For Ṽ it would touch every row every
step; instead the catalogue rows of this step (positives, negatives, histories) receive their
exact share of the penalty's gradient, 2λ/(|Q||V|)·ΨᵀΨ·Ṽ_j, and other rows wait until a step
reads them, so the update stays sparse.
"""

from __future__ import annotations

import torch

from trainer.core.state import Arrays, Meta, as_tensor


class ItemGramian:
    """Σ over the catalogue of Ṽ_j Ṽ_jᵀ (float64)."""

    def __init__(self, dim: int, refresh: int = 512) -> None:
        self.gram = torch.zeros(dim, dim, dtype=torch.float64)
        self.refresh = refresh
        self._swaps = 0
        self.fresh = False  # computed from scratch at least once

    @property
    def due(self) -> bool:
        """Recompute before the next use: never computed, or `refresh` swaps since."""
        return not self.fresh or self._swaps >= self.refresh

    def recompute(self, vectors: torch.Tensor) -> None:
        """From the Ṽ of every catalogue item."""
        v = vectors.detach().double()
        self.gram = v.T @ v
        self._swaps = 0
        self.fresh = True

    def swap(self, old: torch.Tensor, new: torch.Tensor) -> None:
        """Catalogue rows changed: `old` Ṽs leave the sum, `new` ones enter (either may be
        empty: an eviction, an admission)."""
        if not self.fresh:
            return  # the first use recomputes everything
        o, n = old.detach().double(), new.detach().double()
        self.gram += n.T @ n - o.T @ o
        self._swaps += 1

    def matrix(self) -> torch.Tensor:
        return self.gram.float()

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        return {"gram": self.gram.clone() if copy else self.gram}, {
            "swaps": self._swaps,
            "fresh": self.fresh,
        }

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        if "gram" not in arrays:  # recstream 0.1 kept no Gramian: the next step recomputes it
            return
        self.gram = as_tensor(arrays["gram"]).clone()
        self._swaps, self.fresh = int(meta["swaps"]), bool(meta["fresh"])


def gravity_penalty(
    psi: torch.Tensor,
    item_gram: torch.Tensor,
    n_items: int,
    touched: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """λ·(mean squared score of the batch's queries over the catalogue), with the sparse Ṽ
    gradient: each touched catalogue row gets exactly its share of the penalty's gradient.

    psi (B, d) with grad; item_gram (d, d) constant; touched (T, d) catalogue rows' Ṽ with grad.
    """
    b = psi.shape[0]
    scale = weight / (b * max(n_items, 1))
    query_gram = psi.T @ psi
    to_queries = (query_gram * item_gram).sum()
    to_items = (query_gram.detach() * (touched.T @ touched)).sum()
    return scale * (to_queries + to_items)
