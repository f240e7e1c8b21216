"""Sampled softmax with the logQ correction: tensor maths only.

The partition function Z = Σ_j exp(s_j) is estimated from sampled negatives by importance
sampling: a negative k drawn by a strategy with probability q(k), among N negatives in all,
enters with logit s_k - log(N·q(k)). Each strategy's samples estimate Z on their own; mixing
them in proportion to their counts keeps the estimate unbiased, so every sample carries the
probability of the strategy that drew it (see negatives.py). The positive enters uncorrected.
A negative equal to the query's positive (an "accidental hit") is masked out: it is already
counted as the positive.

Negatives come in blocks — columns shared by all queries, or drawn per query — and are never
concatenated: each block's log-sum-exp is taken where it lies (a (B, N) copy per step costs
more than the maths at N ~ 2000 on this machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# log Q of a column that must not count: exp(s - EXCLUDED) is 0 in float32, yet finite, so a
# row whose columns are all excluded has a finite log-sum-exp and a zero (not NaN) gradient;
# masked hits get logit -EXCLUDED for the same reason
EXCLUDED = 1e9


@dataclass
class NegativeBlock:
    logits: torch.Tensor | None  # (B, k) corrected logits (`corrected_logits`, `shared_logits`)
    hits: tuple[torch.Tensor, torch.Tensor]  # (query, column) index pairs to mask
    lse: torch.Tensor | None = None  # or the block's log-sum-exp already (`shared_lse`)


def corrected_logits(scores: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """The one place the logQ correction is applied: logits = scores - log Q.

    `log_q` is log(expected number of times the item is drawn), i.e. log(N·q). `scores` may be
    a whole (B, k) block, or (k,) per-column terms when the correction is shared by every query.
    """
    return scores - log_q


def shared_logits(
    queries: torch.Tensor, items: torch.Tensor, offset: torch.Tensor, log_q: torch.Tensor
) -> torch.Tensor:
    """ψ·Vᵀ + offset - log Q for columns every query shares, in one matmul-add: the correction
    is per column, so it is applied to the (k,) column terms rather than to a (B, k) copy."""
    return torch.addmm(corrected_logits(offset, log_q), queries, items.T)


class _LogSumExp(torch.autograd.Function):
    """Row-wise log-sum-exp that keeps its softmax for the backward pass: one exp over the
    block instead of two (the block is the step's largest tensor)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        top = x.amax(dim=1, keepdim=True)
        p = (x - top).exp_()
        total = p.sum(dim=1, keepdim=True)
        ctx.save_for_backward(p.div_(total))
        return (top + total.log()).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        return p.mul_(grad.unsqueeze(1))


class _SharedLSE(torch.autograd.Function):
    """log Σ_k exp(ψ_i·V_k + c_k) per query over shared columns, hits masked, in one node: the
    forward keeps only the block's softmax, and the backward turns it into the three gradients
    with the two matmuls autograd would run — without its (B, k) copies for the masking."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        psi: torch.Tensor,
        items: torch.Tensor,
        col_terms: torch.Tensor,
        q: torch.Tensor,
        c: torch.Tensor,
    ) -> torch.Tensor:
        logits = torch.addmm(col_terms, psi, items.T)
        if len(q):
            logits.index_put_((q, c), torch.tensor(-EXCLUDED))
        top = logits.amax(dim=1, keepdim=True)
        p = logits.sub_(top).exp_()
        total = p.sum(dim=1, keepdim=True)
        ctx.save_for_backward(p.div_(total), psi, items)
        return (top + total.log()).squeeze(1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[no-untyped-def]
        p, psi, items = ctx.saved_tensors
        g = p.mul_(grad.unsqueeze(1))  # d lse / d logits, scaled (masked entries: 0)
        return g @ items, g.T @ psi, g.sum(0), None, None


def shared_lse(
    psi: torch.Tensor,
    items: torch.Tensor,
    col_terms: torch.Tensor,
    hits: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The log-sum-exp over shared columns of `shared_logits(psi, items, ...)` with `hits`
    masked, as one autograd node (the default step's largest cost).

    >>> g = torch.Generator().manual_seed(0)
    >>> psi, items = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    >>> terms, hits = torch.randn(5, generator=g), (torch.tensor([1]), torch.tensor([2]))
    >>> plain = torch.addmm(terms, psi, items.T)
    >>> plain[1, 2] = -EXCLUDED
    >>> torch.allclose(shared_lse(psi, items, terms, hits), torch.logsumexp(plain, 1))
    True
    """
    return _SharedLSE.apply(psi, items, col_terms, *hits)  # type: ignore[no-any-return]


def logsumexp(x: torch.Tensor) -> torch.Tensor:
    """log Σ_j exp(x_ij) per row, with the gradient of torch.logsumexp.

    >>> x = torch.tensor([[0.0, 1.0], [2.0, -1e9]])
    >>> torch.allclose(logsumexp(x), torch.logsumexp(x, dim=1))
    True
    """
    return _LogSumExp.apply(x)  # type: ignore[no-any-return]


def hit_pairs(positives: np.ndarray, columns: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, column) pairs where a shared column's item is the query's positive.

    >>> [t.tolist() for t in hit_pairs(np.array([5, 7]), np.array([7, 5, 5]))]
    [[0, 0, 1], [1, 2, 0]]
    """
    return pair_hits(np.arange(len(positives)), positives, columns)


def pair_hits(
    queries: np.ndarray, items: np.ndarray, columns: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, column) pairs where a column's item is one of a query's items: for each
    (queries[k], items[k]), every column equal to items[k].

    >>> [t.tolist() for t in pair_hits(np.array([0, 0, 1]), np.array([5, 6, 5]), np.array([6, 5]))]
    [[0, 0, 1], [1, 0, 1]]
    """
    order = np.argsort(columns, kind="stable")
    ordered = columns[order]
    lo = np.searchsorted(ordered, items, "left")
    counts = np.searchsorted(ordered, items, "right") - lo
    total = int(counts.sum())
    rows = np.repeat(queries, counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    cols = order[np.arange(total) + starts]
    return torch.from_numpy(rows), torch.from_numpy(cols)


def sampled_softmax_loss(
    pos_scores: torch.Tensor, blocks: list[NegativeBlock], weights: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of weight_i · (-log p̂(pos_i | x_i)). Weight 0 removes an event."""
    parts = [pos_scores]
    for block in blocks:
        if block.lse is not None:
            parts.append(block.lse)
            continue
        logits, (q, c) = block.logits, block.hits
        assert logits is not None
        if len(q):
            # in place (no (B, k) copy); finite, so a fully masked row has no NaN gradient
            logits.index_put_((q, c), torch.tensor(-EXCLUDED))
        parts.append(logsumexp(logits))
    nll = torch.logsumexp(torch.stack(parts, dim=1), dim=1) - pos_scores
    return (weights * nll).sum() / max(len(weights), 1)


def positives_only_loss(pos_scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-log σ(s_pos): training on positives alone (`--negatives none`). Nothing pushes unrelated
    items apart, so the model folds; kept to make that measurable."""
    nll = torch.nn.functional.softplus(-pos_scores)
    return (weights * nll).sum() / max(len(weights), 1)


def full_softmax_loss(
    scores: torch.Tensor, pos: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The exact loss over all items (for small catalogues and tests). scores (B, n_items)."""
    nll = torch.logsumexp(scores, dim=1) - scores.gather(1, pos.unsqueeze(1)).squeeze(1)
    return (weights * nll).sum() / max(len(weights), 1)
