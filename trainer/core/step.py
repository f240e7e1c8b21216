"""The training step: one sampled-softmax update of the rows and the tower a batch touches.

Given the batch's user and item rows, histories, context inputs and drawn negatives: gather
every row the step reads once per table (positives, negatives, histories), compute ψ, the
positives' scores and each negative block's corrected logits (loss.py), add gravity if asked,
backpropagate, and apply row-sparse Adagrad to exactly the gathered rows (table.py).

Which negatives a query does not count against itself (`--mask-own`): always its own positive
(an accidental hit); with `batch`, also the in-batch columns of its own user — Kafka batches
are keyed by user, so a user's session arrives together, and those columns were not drawn
independently of the query, which the logQ correction assumes; with `history`, also any column
whose item the user has in this batch or in its recent history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer.core.features import MISSING
from trainer.core.gravity import gravity_penalty
from trainer.core.history import EMPTY, history_mean, recency_weights
from trainer.core.loss import (
    EXCLUDED,
    NegativeBlock,
    corrected_logits,
    hit_pairs,
    pair_hits,
    positives_only_loss,
    sampled_softmax_loss,
    shared_logits,
    shared_lse,
)
from trainer.core.negatives import Negatives, draw_hard
from trainer.core.table import SparseGrads, merged

if TYPE_CHECKING:
    from trainer.core.learner import Learner

Pairs = tuple[torch.Tensor, torch.Tensor]


class Step:
    def __init__(self, learner: Learner) -> None:
        self._lr = learner
        self.touched = np.empty(0, np.int64)  # item rows the last step read (and updated)

    def run(
        self,
        u: np.ndarray,
        i: np.ndarray,
        hist: np.ndarray,
        ages: np.ndarray,
        cat_rows: np.ndarray,
        nums: np.ndarray,
        neg: Negatives,
        weights: np.ndarray,
    ) -> float:
        """One update; returns the batch's loss (before the update)."""
        lr = self._lr
        m, s = lr.model, lr.settings
        b, n = len(i), len(neg.rows)
        grads = SparseGrads()
        valid = hist != EMPTY
        # one gather per table: every item row the step reads — positives, negatives, histories
        item_rows, inv = np.unique(np.concatenate([i, neg.rows, hist[valid]]), return_inverse=True)
        self.touched = item_rows
        V = grads.gather_unique(m.items, item_rows)
        bias = grads.gather_unique(m.item_bias, item_rows)
        feature_term = m.feature_term(lr.item_features.rows[item_rows], grads)
        Vf = V if feature_term is None else V + feature_term
        offset = bias[:, 0] + lr.scoring.prior(item_rows)
        # a user without a row of its own (pending, in a shared bucket) is trained as it is
        # served: from its history and context, without an embedding; so is a share
        # `user_dropout` of the others, so that ψ learns to serve users without a vector
        keep = u >= lr.users.buckets
        if s.user_dropout:
            keep &= lr.rng.random(b) >= s.user_dropout
        user_vecs = m.embed(m.users, np.where(keep, u, MISSING), grads)

        local_hist = np.full(hist.shape, EMPTY, dtype=np.int64)
        local_hist[valid] = inv[b + n :]
        context = m.context_inputs(cat_rows, nums, grads)
        pooled = history_mean(Vf, local_hist, recency_weights(ages, s.history_decay))
        psi = m.query(user_vecs, pooled, context)
        pos_idx = torch.from_numpy(inv[:b])
        pos_s = (psi * Vf[pos_idx]).sum(1) + offset[pos_idx]
        w = torch.from_numpy(weights)
        if neg.positives_only:
            loss = positives_only_loss(pos_s, w)
        else:
            hits = self._own(u, i, hist, neg)
            blocks = self._negative_blocks(psi, Vf, offset, inv[b : b + n], i, neg, hits)
            loss = sampled_softmax_loss(pos_s, blocks, w)
        total = loss
        gram = lr.gram
        catalogue = lr.item_valid[item_rows]  # touched rows that are items (not buckets)
        if gram is not None:  # (kept fresh by the learner before the step)
            touched = Vf[torch.from_numpy(catalogue)]
            total = loss + gravity_penalty(psi, gram.matrix(), len(lr.items), touched, s.gravity)
        m.dense_opt.zero_grad()
        # per-event gradient scale: a row sees O(1) gradients, the scale Adagrad is tuned for
        (total * b).backward()
        if lr.sync.world == 1:
            m.dense_opt.step()
            grads.apply()
            if gram is not None:
                gram.swap(touched, lr.scoring.item_vectors(item_rows[catalogue]))
        else:
            self.apply_shared(grads)
        return float(loss.detach())

    def apply_shared(self, grads: SparseGrads | None) -> None:
        """In a group: this rank's user rows, then every rank's item-side and tower gradients
        summed in rank order — the same update on every rank (a rank with no event of its own
        this step takes part with nothing)."""
        lr = self._lr
        m = lr.model
        shared = {name: t for name, t in m.tables().items() if name != "users"}
        mine = grads.take(shared) if grads is not None else {}
        if grads is not None:
            grads.apply()  # the user rows: this rank's alone
        dense = [p for p in m.dense_opt.params]
        flat = np.concatenate(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).numpy().ravel() for p in dense]
        )
        everyone = lr.sync.share((mine, flat))
        summed = sum((f for _, f in everyone), np.zeros_like(flat))
        at = 0
        for p in dense:
            p.grad = torch.from_numpy(summed[at : at + p.numel()].reshape(p.shape)).clone()
            at += p.numel()
        m.dense_opt.step()
        names = sorted({name for part, _ in everyone for name in part})
        totals = {n: merged([part[n] for part, _ in everyone if n in part]) for n in names}
        union = totals["items"][0] if "items" in totals else np.empty(0, np.int64)
        self.touched = union
        gram = lr.gram
        catalogue = union[lr.item_valid[union]]
        before = lr.scoring.item_vectors(catalogue) if gram is not None else None
        for name, (rows, grad) in totals.items():
            shared[name].apply(torch.from_numpy(rows), torch.from_numpy(grad))
        if gram is not None and before is not None:
            gram.swap(before, lr.scoring.item_vectors(catalogue))

    def _own(self, u: np.ndarray, i: np.ndarray, hist: np.ndarray, neg: Negatives) -> Pairs:
        """(query, shared column) pairs a query does not count as negatives (`--mask-own`)."""
        mode = self._lr.settings.mask_own
        pairs = [hit_pairs(i, neg.rows)]  # accidental hits: the query's own positive
        if mode != "none":
            q, k = (t.numpy() for t in hit_pairs(u, u))  # events k of the query's own user
            if mode == "batch":
                pairs.append((torch.from_numpy(q), torch.from_numpy(k + neg.in_batch.start)))
            else:
                valid = hist != EMPTY
                owners = np.concatenate([q, np.nonzero(valid)[0]])
                pairs.append(pair_hits(owners, np.concatenate([i[k], hist[valid]]), neg.rows))
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def _negative_blocks(
        self,
        psi: torch.Tensor,
        Vf: torch.Tensor,
        offset: torch.Tensor,
        neg_local: np.ndarray,
        i: np.ndarray,
        neg: Negatives,
        hits: Pairs,
    ) -> list[NegativeBlock]:
        lr = self._lr
        s, item_valid = lr.settings, lr.item_valid
        neg_idx = torch.from_numpy(neg_local)
        log_q = torch.from_numpy(neg.log_q).float()
        if not neg.hard:  # the common case, as one fused node
            terms = corrected_logits(offset[neg_idx], log_q)
            return [NegativeBlock(None, hits, shared_lse(psi, Vf[neg_idx], terms, hits))]
        logits = shared_logits(psi, Vf[neg_idx], offset[neg_idx], log_q)
        blocks = [NegativeBlock(logits, hits)]
        if neg.hard:
            # the pool's raw scores ψ·V + offset: the corrected logits with log Q added back,
            # unless the pool columns are excluded from the loss (their log Q is huge)
            if neg.pool_only:
                pool_idx = neg_idx[neg.pool]
                pool_s = psi @ Vf[pool_idx].T + offset[pool_idx]
            else:
                pool_s = logits[:, neg.pool] + log_q[neg.pool]
            # rows that are not items (buckets, free rows) must not be drawn as hard negatives
            invalid = ~torch.from_numpy(item_valid[neg.rows[neg.pool]])
            drawable = pool_s.masked_fill(invalid.unsqueeze(0), -EXCLUDED)
            pos, hard_log_q = draw_hard(
                drawable,
                torch.from_numpy(neg.pool_log_q),
                neg,
                s.hard_temperature,
                lr.torch_gen,
                s.logq,
            )
            rows = neg.rows[neg.pool][pos.numpy()]
            q, c = np.nonzero((rows == i[:, None]) | ~item_valid[rows])
            hard_hits = (torch.from_numpy(q), torch.from_numpy(c))
            hard_logits = corrected_logits(pool_s.gather(1, pos), hard_log_q)
            blocks.append(NegativeBlock(hard_logits, hard_hits))
        return blocks
