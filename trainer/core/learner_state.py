"""A learner's state as tensors + JSON metadata, and back: everything needed to resume exactly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainer.core.popularity import PopularitySampler, SumTree

if TYPE_CHECKING:
    from trainer.core.learner import Learner


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def export_state(lr: Learner) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    m = lr.model
    nu, ni = lr.users.rows_used, lr.items.rows_used
    tensors: dict[str, torch.Tensor] = {}
    for name, table in m.tables().items():
        rows = {"users": nu, "items": ni, "item_bias": ni}.get(name, table.capacity)
        for k, v in table.state(rows).items():
            tensors[f"{name}.{k}"] = v
    for k, v in m.tower.state_dict().items():
        tensors[f"tower.{k}"] = v.detach().clone()
    for idx, st in m.dense_opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"dense_opt.{idx}.{k}"] = torch.as_tensor(v).clone()
    tensors["counts.stored"] = _t(lr.counts.arrays()["stored"])
    tensors["sampler.tree"] = _t(lr.sampler.tree.tree.copy())
    for k, arr in lr.history.arrays(nu).items():
        tensors[f"history.{k}"] = _t(arr)
    for name, vocab in (("users", lr.users), ("items", lr.items)):
        for k, arr in vocab.arrays().items():
            tensors[f"vocab.{name}.{k}"] = _t(arr)
    tensors["item_valid"] = _t(lr.item_valid[:ni].astype(np.uint8))
    tensors["user_active"] = _t(lr.user_active[:nu])
    tensors["item_features"] = _t(lr.item_features.rows[:ni])
    tensors["rng.tables"] = m.generator.get_state()
    tensors["rng.hard"] = lr.torch_gen.get_state()
    meta = {
        "users": lr.users.state(),
        "items": lr.items.state(),
        "history_pending": lr.history.pending_state(),
        "context": lr.context.state(),
        "counts": lr.counts.state(),
        "events_applied": lr.events_applied,
        "batches": lr.batches,
        "last_ts": lr.last_ts,
        "progressive": lr.progress.state(),
        # numpy generator states hold 128-bit ints: keep them as a JSON string
        "rng": json.dumps(
            {"sampler": lr.sampler.rng.bit_generator.state, "learner": lr.rng.bit_generator.state}
        ),
    }
    return tensors, meta


def import_state(lr: Learner, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Learner:
    s = lr.settings
    for name, vocab in (("users", lr.users), ("items", lr.items)):
        prefix = f"vocab.{name}."
        arrays = {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        vocab.load(meta[name], arrays)
    m = lr.model
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
    lr.counts.load(meta["counts"], {"stored": tensors["counts.stored"].numpy()})
    lr.sampler = PopularitySampler(lr.counts, s.alpha, s.epsilon, seed=s.seed + 1)
    tree = tensors["sampler.tree"].numpy()
    lr.sampler.tree = SumTree(len(tree) // 2)
    lr.sampler.tree.tree[:] = tree
    lr.history.ensure(lr.users.rows_used)
    lr.history.load(
        {k: tensors[f"history.{k}"].numpy() for k in ("items", "next")}, meta["history_pending"]
    )
    lr.context.load(meta["context"])
    ni, nu = lr.items.rows_used, lr.users.rows_used
    lr.item_valid = np.zeros(max(ni, 1024), dtype=bool)
    lr.item_valid[:ni] = tensors["item_valid"].numpy().astype(bool)
    lr.user_active = np.zeros(max(nu, 1024), dtype=np.int64)
    lr.user_active[:nu] = tensors["user_active"].numpy()
    lr.item_features.ensure(ni)
    lr.item_features.rows[:ni] = tensors["item_features"].numpy()
    m.generator.set_state(tensors["rng.tables"])
    lr.torch_gen.set_state(tensors["rng.hard"])
    rng = json.loads(meta["rng"])
    lr.sampler.rng.bit_generator.state = rng["sampler"]
    lr.rng.bit_generator.state = rng["learner"]
    lr.progress.load(meta["progressive"])
    lr.events_applied = int(meta["events_applied"])
    lr.batches = int(meta["batches"])
    lr.last_ts = int(meta["last_ts"])
    return lr
