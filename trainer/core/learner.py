"""The learner: the model and everything it counts, learning one batch of events at a time.

Pure core: ids, numbers and tensors in; tensors and figures out. No kafka, redis or files.
Order inside `learn`: map ids to rows (admitting, evicting, resetting reused rows) → score a
sample of the batch's queries against the whole catalogue *before* learning them (`Evaluator`:
progressive recall, as the model would have served them) → count the batch's positives in the
popularity distribution → draw negatives → the update (`Step`: sampled softmax with logQ,
gravity, sparse updates) → push the batch's items onto the users' histories (after the step,
so no event sees itself). Scoring for serving, evaluation and benchmarks is `learner.scoring`.

The learner's state is its parts' states (`trainer.core.state`) under fixed names, so that a
checkpoint written by an earlier recstream still loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np
import torch

from trainer.core.activity import UserActivity
from trainer.core.columns import EventColumns, StepStats
from trainer.core.evaluator import Evaluator
from trainer.core.features import ContextEncoder, ItemFeatures
from trainer.core.frequency import InBatchFrequency
from trainer.core.gravity import ItemGramian
from trainer.core.history import UserHistory
from trainer.core.loss import EXCLUDED
from trainer.core.model import TwoTower
from trainer.core.negatives import draw
from trainer.core.popularity import DecayedCounts, PopularitySampler
from trainer.core.scoring import Scorer
from trainer.core.settings import ModelSettings
from trainer.core.state import (
    Arrays,
    Meta,
    as_numpy,
    as_tensor,
    copied,
    jsonable,
    prefixed,
    refill,
    unprefixed,
)
from trainer.core.step import Step
from trainer.core.sync import Alone, Sync, owner
from trainer.core.vocab import Vocabulary

__all__ = ["EventColumns", "Learner", "StepStats"]

EVICT_EVERY = 64  # batches between staleness sweeps of the vocabularies


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    """`a` with room for at least `n` entries (zeros added, doubling)."""
    return a if len(a) >= n else np.concatenate([a, np.zeros(max(n, len(a)), a.dtype)])


class Learner:
    def __init__(
        self,
        settings: ModelSettings,
        clock: Callable[[], float] = perf_counter,
        sync: Sync | None = None,
    ) -> None:
        s = self.settings = settings
        self.sync: Sync = sync or Alone()
        self.users = Vocabulary(s.min_count, s.buckets, s.max_users, s.evict_after_ms)
        self.items = Vocabulary(s.min_count, s.buckets, s.max_items, s.evict_after_ms)
        self.model = TwoTower(s, self.sync.rank)
        self.context = ContextEncoder(s.context_fields, s.feature_buckets)
        self.item_features = ItemFeatures(s.item_features, s.feature_buckets)
        self.counts = DecayedCounts(s.half_life_ms)  # the popularity sampler's
        self.prior_counts = [DecayedCounts(h) for h in s.prior_half_lives]  # the prior's
        self.sampler = PopularitySampler(self.counts, s.alpha, s.epsilon, seed=s.seed + 1)
        self.history = UserHistory(s.history)
        self.activity = UserActivity()
        # this rank's own draws (uniform negatives, user dropout, hard negatives); the shared
        # ones (the popularity sampler's) are the same on every rank
        rank = self.sync.rank
        self.rng = np.random.default_rng(s.seed + 2 + 1000 * rank)
        self.torch_gen = torch.Generator().manual_seed(s.seed + 3 + 1000 * rank)
        self.in_batch = InBatchFrequency()
        self.gram = ItemGramian(s.dim, 64 if s.item_features else 512) if s.gravity else None
        self._no_vectors = torch.empty(0, s.dim)
        self.item_valid = np.zeros(1024, dtype=bool)  # rows that are admitted items
        self.user_active = np.zeros(1024, dtype=np.int64)  # events_applied at last activity
        self.item_active = np.zeros(1024, dtype=np.int64)  # events_applied at the last change
        self.events_applied = 0
        self.batches = 0
        self.last_ts = 0
        self._clock = clock
        self.scoring = Scorer(self)
        self.step = Step(self)
        self.evaluator = Evaluator(self, clock, seed=s.seed + 4)

    # ---- rows ------------------------------------------------------------------------------
    def _rows(
        self, cols: EventColumns, group: EventColumns
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows of this rank's users (`cols`) and of the group's items (`group`: every rank's
        events, so the item side changes alike everywhere), after admissions and evictions;
        returns also the user and item rows admitted in this batch (new to the model)."""
        if self.batches % EVICT_EVERY == 0:
            now = max(self.last_ts, int(group.ts.max()))
            self.users.evict(now)
            self.items.evict(now)
        u = self.users.add(cols.users, cols.ts)
        i = self.items.add(group.items, group.ts)
        m = self.model
        nu, ni = self.users.rows_used, self.items.rows_used
        m.users.ensure(nu)
        m.items.ensure(ni)
        m.item_bias.ensure(ni)
        self.history.ensure(nu)
        self.activity.ensure(nu)
        self.counts.ensure(ni)
        for counts in self.prior_counts:
            counts.ensure(ni)
        self.sampler.tree.ensure(ni)
        self.item_features.ensure(ni)
        self.item_valid = _grown(self.item_valid, ni)
        self.user_active = _grown(self.user_active, nu)
        self.item_active = _grown(self.item_active, ni)

        freed_users, freed_items = self.users.take_freed(), self.items.take_freed()
        self.history.reset(freed_users)
        self.activity.reset(freed_users)
        self.history.forget_items(freed_items)
        if self.gram is not None:  # evicted items leave the catalogue's Gramian
            gone_rows = freed_items[self.item_valid[freed_items]]
            self.gram.swap(self.scoring.item_vectors(gone_rows), self._no_vectors)
        self.item_valid[freed_items] = False
        fresh_users, fresh_items = self.users.take_fresh(), self.items.take_fresh()
        m.users.reset(torch.from_numpy(fresh_users))
        adopted = self.history.adopt(fresh_users, [self.users.id_of(r) or "" for r in fresh_users])
        self.activity.start(fresh_users, adopted)
        gone = np.concatenate([freed_items, fresh_items])
        m.items.reset(torch.from_numpy(fresh_items))
        m.item_bias.reset(torch.from_numpy(fresh_items))
        for counts in (self.counts, *self.prior_counts, self.in_batch.counts):
            counts.clear(gone)
        self.sampler.update(gone)
        self.item_features.reset(gone)
        self.item_valid[fresh_items] = True
        if self.gram is not None:  # ... and admitted ones enter it
            self.gram.swap(self._no_vectors, self.scoring.item_vectors(fresh_items))
        return u, i, fresh_users, fresh_items

    # ---- learning --------------------------------------------------------------------------
    def learn(self, cols: EventColumns) -> StepStats:
        """Learn one batch. An event of weight 0 teaches nothing: it counts as applied and
        changes nothing else (no row, count, history or negative). In a group (`sync`), every
        rank calls this with its own batch at each step; each learns the events of the users it
        owns, and the group's events all reach the item side."""
        n = len(cols)
        group, mine, applied = self._share(cols)
        if len(group) == 0:
            self.events_applied += applied
            return StepStats(n, 0.0, 0)
        cols = group if mine.all() else group.take(mine)
        s = self.settings
        contexts = cols.context_list()
        u, i_group, fresh_users, fresh_items = self._rows(cols, group)
        i = i_group[mine]
        t0 = self._clock()
        ranks = self.evaluator.ranks_before_learning(u, i, cols, fresh_users, fresh_items)
        t1 = self._clock()
        self.last_ts = max(self.last_ts, int(group.ts.max()))
        # the step sees the popularity of everything before this batch (its own positives in
        # the prior would leak the label); in-batch q counts the batch it is drawn from
        self.in_batch.update(i_group)
        neg = draw(
            s.negatives,
            i,
            self.sampler,
            self.in_batch,
            self.items.rows_used,
            s.hard_pool,
            self.rng,
            s.logq,
        )
        neg.log_q[~self.item_valid[neg.rows]] = EXCLUDED  # buckets and free rows are not items
        t2 = self._clock()
        own = i >= self.items.buckets  # positives with a row of their own
        if self.gram is not None and self.gram.due:
            rows = np.flatnonzero(self.item_valid[: self.items.rows_used])
            self.gram.recompute(self.scoring.item_vectors(rows))
        if len(group) != len(cols):  # numeric context statistics: the group's, alike everywhere
            self.context.encode(group.context_list(), learn=True)
        loss = 0.0
        if len(cols):
            # each event's query as of its own time: the user's earlier events of this batch too
            hist, ages = self.history.in_sequence(u, i, own, cols.users, self.users.buckets)
            cat_rows, nums = self.context.encode(contexts, learn=len(group) == len(cols))
            if s.activity_features:
                pending = self.history.pending_count(cols.users) if self.users.buckets else None
                act = self.activity.in_sequence(u, cols.ts, cols.users, self.users.buckets, pending)
                nums = np.concatenate([nums, act], 1)
            loss = self.step.run(u, i, hist, ages, cat_rows, nums, neg, cols.weights)
        else:  # nothing of this rank's: it still takes part in the group's update
            self.step.apply_shared(None)
        owned = i_group >= self.items.buckets
        g_items, g_ts, g_w = i_group[owned], group.ts[owned], group.weights[owned]
        self.sampler.rescaled(self.counts.add(g_items, g_ts, g_w))
        for counts in self.prior_counts:
            counts.add(g_items, g_ts, g_w)
        self.sampler.update(g_items)
        self.history.push(
            u[own], i[own], [cols.users[k] for k in np.flatnonzero(own)], self.users.buckets
        )
        group_contexts = group.context_list()
        self._observe_features(g_items, [group_contexts[k] for k in np.flatnonzero(owned)])
        self.events_applied += applied
        users_mine = u >= self.users.buckets
        self.user_active[u[users_mine]] = self.events_applied
        self.activity.record(u[users_mine], cols.ts[users_mine])
        # item rows whose vector, bias or count changed: what a delta publish must carry
        self.item_active[self.step.touched] = self.events_applied
        self.item_active[fresh_items] = self.events_applied
        self.batches += 1
        t3 = self._clock()
        self.evaluator.account(ranks, loss, eval_ms=(t1 - t0) * 1e3, step_ms=(t3 - t1) * 1e3)
        timings = {"eval": (t1 - t0) * 1e3, "sample": (t2 - t1) * 1e3, "step": (t3 - t2) * 1e3}
        return StepStats(n, loss, neg.total, 0 if ranks is None else len(ranks), timings)

    def _share(self, cols: EventColumns) -> tuple[EventColumns, np.ndarray, int]:
        """(the group's events of weight > 0 in rank order, which of them this rank learns,
        how many events the group applied this step)."""
        if self.sync.world == 1:
            positive = cols.weights > 0
            kept = cols if positive.all() else cols.take(positive)
            return kept, np.ones(len(kept), bool), len(cols)
        everyone = self.sync.share(cols)
        applied = sum(len(c) for c in everyone)
        group = EventColumns.concat(everyone)
        if not (group.weights > 0).all():
            group = group.take(group.weights > 0)
        return group, owner(group.users, self.sync.world) == self.sync.rank, applied

    def _observe_features(self, items: np.ndarray, contexts: list[dict[str, Any]]) -> None:
        """Items' latest feature values; new values move their Ṽ, so the Gramian follows."""
        if not self.item_features.fields:
            return
        rows = np.unique(items[self.item_valid[items]]) if self.gram is not None else None
        before = self.scoring.item_vectors(rows) if rows is not None else None
        self.item_features.observe(items, contexts)
        if self.gram is not None and rows is not None and before is not None:
            self.gram.swap(before, self.scoring.item_vectors(rows))

    def figures(self) -> dict[str, Any]:
        """Progressive quality so far and vocabulary counters, for logs, status and metrics."""
        return {
            **self.evaluator.progress.figures(),
            "users": len(self.users),
            "items": len(self.items),
            "users_admitted": self.users.admitted,
            "users_evicted": self.users.evicted,
            "items_admitted": self.items.admitted,
            "items_evicted": self.items.evicted,
        }

    # ---- state -----------------------------------------------------------------------------
    def _parts(self) -> dict[str, Any]:
        """Each stateful part with the prefix of its arrays and the key of its metadata (the
        names of checkpoint schema 1, kept so that older checkpoints load)."""
        parts = {
            "vocab.users.": (self.users, "users"),
            "vocab.items.": (self.items, "items"),
            "": (self.model, "model"),
            "counts.": (self.counts, "counts"),
            "in_batch.": (self.in_batch, "in_batch"),
            **{
                f"prior_counts.{k}.": (counts, f"prior_counts{k}")
                for k, counts in enumerate(self.prior_counts)
            },
            "sampler.": (self.sampler, "sampler"),
            "history.": (self.history, "history"),
            "activity.": (self.activity, "activity"),
            "context.": (self.context, "context"),
            "item_features.": (self.item_features, "item_features"),
            "progressive.": (self.evaluator, "progressive"),
        }
        if self.gram is not None:
            parts["gram."] = (self.gram, "gram")
        return parts

    def state(self, copy: bool = True) -> tuple[Arrays, Meta]:
        """Everything needed to resume exactly: (tensors, JSON-able metadata). With
        copy=False: views of the live arrays and metadata as it is (see `copy_into`)."""
        arrays: Arrays = {}
        meta: Meta = {}
        for prefix, (part, key) in self._parts().items():
            part_arrays, meta[key] = part.state(copy)
            arrays.update(prefixed(part_arrays, prefix))
        nu, ni = self.users.rows_used, self.items.rows_used
        arrays["item_valid"] = copied(self.item_valid[:ni].view(np.uint8), copy)
        arrays["user_active"] = copied(self.user_active[:nu], copy)
        arrays["item_active"] = copied(self.item_active[:ni], copy)
        arrays["rng.hard"] = self.torch_gen.get_state()
        meta.update(
            events_applied=self.events_applied,
            batches=self.batches,
            last_ts=self.last_ts,
            learner_rng=self.rng.bit_generator.state,
        )
        if not copy:
            return arrays, meta
        return {k: as_tensor(v) for k, v in arrays.items()}, jsonable(meta)

    def copy_into(self, twin: Learner) -> None:
        """Make `twin` (same settings) an exact copy of this learner, copying into its own
        buffers: a checkpoint's snapshot, taken while training waits; memory copies only,
        twin's indexes are rebuilt when it first needs them."""
        twin.load_state(*self.state(copy=False))

    def load_state(self, arrays: Arrays, meta: Meta) -> None:
        arrays = dict(arrays)
        meta = _upgrade(arrays, meta)
        for prefix, (part, key) in self._parts().items():
            part.load_state(unprefixed(arrays, prefix) if prefix else arrays, meta.get(key, {}))
        for k, counts in enumerate(self.prior_counts):
            if f"prior_counts{k}" not in meta and counts.half_life_ms == self.counts.half_life_ms:
                counts.load_state(*self.counts.state())  # 0.1: the prior read the sampler's counts
        self.item_valid = refill(self.item_valid, as_numpy(arrays["item_valid"]).view(bool))
        self.user_active = refill(self.user_active, arrays["user_active"])
        if "item_active" in arrays:
            self.item_active = refill(self.item_active, arrays["item_active"])
        else:  # recstream 0.1 kept none: every item counts as changed
            self.item_active = np.full(len(self.item_valid), int(meta["events_applied"]))
        self.torch_gen.set_state(as_tensor(arrays["rng.hard"]))
        self.rng.bit_generator.state = meta["learner_rng"]
        self.events_applied = int(meta["events_applied"])
        self.batches = int(meta["batches"])
        self.last_ts = int(meta["last_ts"])

    @classmethod
    def from_state(
        cls, settings: ModelSettings, tensors: dict[str, torch.Tensor], meta: Meta
    ) -> Learner:
        learner = cls(settings)
        learner.load_state(dict(tensors), meta)
        return learner


def _upgrade(arrays: Arrays, meta: Meta) -> Meta:
    """The metadata of a checkpoint written by recstream 0.1 (schema 1), in today's names."""
    if "learner_rng" in meta:
        return meta
    rng = json.loads(meta["rng"])  # generator states were a JSON string then
    arrays["item_features.rows"] = arrays.pop("item_features")
    return {
        **meta,
        "model": {},
        "sampler": {"rng": rng["sampler"]},
        "history": {"pending": meta.get("history_pending", [])},
        "in_batch": {},
        "gram": {},
        "item_features": {},
        "learner_rng": rng["learner"],
    }
