"""The learner: one minibatch step of the softmax model on a batch of events.

Pure core: ids, numbers and tensors in; tensors and figures out. No kafka, redis or files.
Order inside a step: map ids to rows (growing the tables) → count the batch's positives in the
popularity distribution → draw negatives → sampled softmax with logQ → sparse updates → push
the batch's items onto the users' histories (after the step, so no event sees itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainer.config import ModelSettings
from trainer.history import EMPTY, UserHistory
from trainer.loss import sampled_softmax_loss
from trainer.model import TwoTower
from trainer.negatives import draw_shared
from trainer.popularity import DecayedCounts, PopularitySampler, SumTree
from trainer.vocab import Vocabulary


@dataclass
class EventColumns:
    """A batch as columns: what the learner needs of each event."""

    users: list[str]
    items: list[str]
    ts: np.ndarray  # int64 epoch ms
    weights: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_events(cls, events: Any) -> EventColumns:
        """From any sequence of objects with user, item, ts and weight attributes."""
        return cls(
            users=[e.user for e in events],
            items=[e.item for e in events],
            ts=np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events)),
            weights=np.fromiter((e.weight for e in events), dtype=np.float32, count=len(events)),
        )


@dataclass(frozen=True)
class StepStats:
    events: int
    loss: float
    negatives: int


class Learner:
    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.users = Vocabulary()
        self.items = Vocabulary()
        self.model = TwoTower(settings)
        self.counts = DecayedCounts(settings.half_life_ms)
        self.sampler = PopularitySampler(
            self.counts, settings.alpha, settings.epsilon, seed=settings.seed + 1
        )
        self.history = UserHistory(settings.history)
        self.rng = np.random.default_rng(settings.seed + 2)
        self.events_applied = 0
        self.last_ts = 0

    # ---- rows ------------------------------------------------------------------------------
    def _rows(self, cols: EventColumns) -> tuple[np.ndarray, np.ndarray]:
        u = self.users.add(cols.users)
        i = self.items.add(cols.items)
        self.model.users.ensure(len(self.users))
        self.model.items.ensure(len(self.items))
        self.model.item_bias.ensure(len(self.items))
        self.history.ensure(len(self.users))
        return u, i

    # ---- the step --------------------------------------------------------------------------
    def learn(self, cols: EventColumns) -> StepStats:
        if len(cols) == 0:
            return StepStats(0, 0.0, 0)
        u, i = self._rows(cols)
        rescale = self.counts.add(i, cols.ts)
        self.sampler.rescaled(rescale)
        self.sampler.update(i)
        neg = draw_shared(
            self.settings.negatives, i, self.sampler, self.counts, len(self.items), self.rng
        )
        hist = self.history.get(u)
        loss = self._step(u, i, hist, neg.rows, neg.log_q, cols.weights)
        self.history.push(u, i)
        self.events_applied += len(cols)
        self.last_ts = max(self.last_ts, int(cols.ts.max()))
        return StepStats(len(cols), loss, neg.count)

    def _step(
        self,
        u: np.ndarray,
        i: np.ndarray,
        hist: np.ndarray,
        neg_rows: np.ndarray,
        neg_log_q: np.ndarray,
        weights: np.ndarray,
    ) -> float:
        m = self.model
        b, n = len(i), len(neg_rows)
        valid = hist != EMPTY
        # one gather per table: every item row the step reads, positives, negatives, histories
        item_rows, inv = np.unique(np.concatenate([i, neg_rows, hist[valid]]), return_inverse=True)
        user_rows, u_inv = np.unique(u, return_inverse=True)
        item_t = torch.from_numpy(item_rows)
        user_t = torch.from_numpy(user_rows)
        V = m.items.gather(item_t)
        bias = m.item_bias.gather(item_t)
        U = m.users.gather(user_t)

        pos_idx = torch.from_numpy(inv[:b])
        neg_idx = torch.from_numpy(inv[b : b + n])
        hist_idx = np.full(hist.shape, len(item_rows), dtype=np.int64)  # padding → a zero row
        hist_idx[valid] = inv[b + n :]
        V_pad = torch.cat([V, V.new_zeros(1, m.dim)])
        counts = torch.from_numpy(valid.sum(1, keepdims=True)).clamp_(min=1).float()
        hist_mean = V_pad[torch.from_numpy(hist_idx)].sum(1) / counts

        psi = m.query(U[torch.from_numpy(u_inv)], hist_mean)
        pos_s = (psi * V[pos_idx]).sum(1) + bias[pos_idx, 0]
        neg_s = psi @ V[neg_idx].T + bias[neg_idx, 0]
        hits = torch.from_numpy(neg_rows[None, :] == i[:, None])
        loss = sampled_softmax_loss(
            pos_s, neg_s, torch.from_numpy(neg_log_q).float(), hits, torch.from_numpy(weights)
        )
        m.dense_opt.zero_grad(set_to_none=True)
        (
            loss * b
        ).backward()  # per-event gradient scale: rows see O(1) gradients, as Adagrad expects
        m.dense_opt.step()
        assert V.grad is not None and U.grad is not None and bias.grad is not None
        m.items.apply(item_t, V.grad)
        m.item_bias.apply(item_t, bias.grad)
        m.users.apply(user_t, U.grad)
        return float(loss.detach())

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def query_vectors(self, user_rows: np.ndarray) -> torch.Tensor:
        """ψ for known user rows, from their embeddings and current histories."""
        m = self.model
        hist = self.history.get(user_rows)
        valid = torch.from_numpy(hist != EMPTY)
        V = m.items.weight[torch.from_numpy(np.where(hist == EMPTY, 0, hist))]
        V = V * valid.unsqueeze(-1)
        mean = V.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return m.query(m.users.weight[torch.from_numpy(user_rows)], mean)

    def item_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, b) of every known item row."""
        n = len(self.items)
        return self.model.items.weight[:n], self.model.item_bias.weight[:n, 0]

    @torch.no_grad()
    def scores(self, user_rows: np.ndarray) -> torch.Tensor:
        """Scores of every known item for each user row: (B, n_items)."""
        V, b = self.item_matrix()
        return self.query_vectors(user_rows) @ V.T + b

    # ---- state -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume exactly: tensors, and JSON-able metadata."""
        m = self.model
        nu, ni = len(self.users), len(self.items)
        tensors: dict[str, torch.Tensor] = {}
        for name, table in m.tables().items():
            rows = nu if name == "users" else ni
            for k, v in table.state(rows).items():
                tensors[f"{name}.{k}"] = v
        for k, v in m.tower.state_dict().items():
            tensors[f"tower.{k}"] = v.detach().clone()
        for idx, st in m.dense_opt.state_dict()["state"].items():
            for k, v in st.items():
                tensors[f"dense_opt.{idx}.{k}"] = torch.as_tensor(v).clone()
        tensors["counts.stored"] = torch.from_numpy(self.counts.arrays()["stored"])
        tensors["sampler.tree"] = torch.from_numpy(self.sampler.tree.tree.copy())
        for k, arr in self.history.arrays(nu).items():
            tensors[f"history.{k}"] = torch.from_numpy(arr)
        tensors["rng.torch"] = m.users._gen.get_state()
        meta = {
            "users": self.users.ids(),
            "items": self.items.ids(),
            "counts": self.counts.state(),
            "events_applied": self.events_applied,
            "last_ts": self.last_ts,
            "rng": json.dumps(
                {
                    "sampler": self.sampler.rng.bit_generator.state,
                    "learner": self.rng.bit_generator.state,
                }
            ),
        }
        return tensors, meta

    @classmethod
    def from_state(
        cls, settings: ModelSettings, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> Learner:
        self = cls(settings)
        self.users = Vocabulary(meta["users"])
        self.items = Vocabulary(meta["items"])
        m = self.model
        for name, table in m.tables().items():
            table.load({"weight": tensors[f"{name}.weight"], "accum": tensors[f"{name}.accum"]})
        m.tower.load_state_dict(
            {k[len("tower.") :]: v for k, v in tensors.items() if k.startswith("tower.")}
        )
        opt_state = m.dense_opt.state_dict()
        for key, v in tensors.items():
            if key.startswith("dense_opt."):
                _, idx, name = key.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = v
        m.dense_opt.load_state_dict(opt_state)
        self.counts.load(meta["counts"], {"stored": tensors["counts.stored"].numpy()})
        self.sampler = PopularitySampler(
            self.counts, settings.alpha, settings.epsilon, seed=settings.seed + 1
        )
        tree = tensors["sampler.tree"].numpy()
        self.sampler.tree = SumTree(len(tree) // 2)
        self.sampler.tree.tree[:] = tree
        self.history.load({k: tensors[f"history.{k}"].numpy() for k in ("items", "next")})
        m.users._gen.set_state(tensors["rng.torch"])
        rng = json.loads(meta["rng"])
        self.sampler.rng.bit_generator.state = rng["sampler"]
        self.rng.bit_generator.state = rng["learner"]
        self.events_applied = int(meta["events_applied"])
        self.last_ts = int(meta["last_ts"])
        return self
