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

import numpy as np
import torch

EXCLUDED = 1e9  # see negatives.EXCLUDED (loss.py imports nothing of the sampler)


@dataclass
class NegativeBlock:
    scores: torch.Tensor  # (B, k) raw scores ψ·V + offsets
    log_q: torch.Tensor  # (k,) shared or (B, k) per query: log(N·q)
    hits: tuple[torch.Tensor, torch.Tensor]  # (query, column) index pairs to mask


def corrected_logits(scores: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """The one place the logQ correction is applied: logits = scores - log Q.

    `log_q` is log(expected number of times the item is drawn), i.e. log(N·q).
    """
    return scores - log_q


def hit_pairs(positives: np.ndarray, columns: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, column) pairs where a shared column's item is the query's positive.

    >>> [t.tolist() for t in hit_pairs(np.array([5, 7]), np.array([7, 5, 5]))]
    [[0, 0, 1], [1, 2, 0]]
    """
    order = np.argsort(columns, kind="stable")
    ordered = columns[order]
    lo = np.searchsorted(ordered, positives, "left")
    counts = np.searchsorted(ordered, positives, "right") - lo
    total = int(counts.sum())
    queries = np.repeat(np.arange(len(positives)), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    cols = order[np.arange(total) + starts]
    return torch.from_numpy(queries), torch.from_numpy(cols)


def sampled_softmax_loss(
    pos_scores: torch.Tensor, blocks: list[NegativeBlock], weights: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of weight_i · (-log p̂(pos_i | x_i)). Weight 0 removes an event."""
    parts = [pos_scores]
    for block in blocks:
        logits = corrected_logits(block.scores, block.log_q)
        q, c = block.hits
        if len(q):
            # in place (no (B, k) copy); finite, so a fully masked row has no NaN gradient
            logits.index_put_((q, c), torch.tensor(-EXCLUDED))
        parts.append(torch.logsumexp(logits, dim=1))
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
