"""Sampled softmax with the logQ correction: tensor maths only.

The partition function Z = Σ_j exp(s_j) is estimated from sampled negatives by importance
sampling: a negative k drawn by a strategy with probability q(k), among N negatives in all,
enters with logit s_k - log(N·q(k)). Each strategy's samples estimate Z on their own; mixing
them in proportion to their counts keeps the estimate unbiased, so every sample carries the
probability of the strategy that drew it (see negatives.py). The positive enters uncorrected.
A negative equal to the query's positive (an "accidental hit") is masked out: it is already
counted as the positive.
"""

from __future__ import annotations

import torch


def corrected_logits(scores: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """The one place the logQ correction is applied: logits = scores - log Q.

    `log_q` is log(expected number of times the item is drawn), i.e. log(N·q).
    """
    return scores - log_q


def sampled_softmax_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    neg_log_q: torch.Tensor,
    hits: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Mean over the batch of weight_i · (-log p̂(pos_i | x_i)).

    pos_scores (B,), neg_scores (B, N), neg_log_q broadcastable to (B, N), hits (B, N) bool,
    weights (B,). Returns a scalar; weight 0 removes an event's term.
    """
    neg = corrected_logits(neg_scores, neg_log_q).masked_fill(hits, float("-inf"))
    logits = torch.cat([pos_scores.unsqueeze(1), neg], dim=1)
    nll = torch.logsumexp(logits, dim=1) - pos_scores
    return (weights * nll).sum() / max(len(weights), 1)


def full_softmax_loss(
    scores: torch.Tensor, pos: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The exact loss over all items (for small catalogues and tests). scores (B, n_items)."""
    nll = torch.logsumexp(scores, dim=1) - scores.gather(1, pos.unsqueeze(1)).squeeze(1)
    return (weights * nll).sum() / max(len(weights), 1)
