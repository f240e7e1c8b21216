"""A learner's state as tensors + JSON metadata, and back: everything needed to resume exactly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from trainer.popularity import PopularitySampler, SumTree
from trainer.vocab import Vocabulary

if TYPE_CHECKING:
    from trainer.learner import Learner


def export_state(lr: Learner) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    m = lr.model
    nu, ni = len(lr.users), len(lr.items)
    tensors: dict[str, torch.Tensor] = {}
    for name, table in m.tables().items():
        for k, v in table.state(nu if name == "users" else ni).items():
            tensors[f"{name}.{k}"] = v
    for k, v in m.tower.state_dict().items():
        tensors[f"tower.{k}"] = v.detach().clone()
    for idx, st in m.dense_opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"dense_opt.{idx}.{k}"] = torch.as_tensor(v).clone()
    tensors["counts.stored"] = torch.from_numpy(lr.counts.arrays()["stored"])
    tensors["sampler.tree"] = torch.from_numpy(lr.sampler.tree.tree.copy())
    for k, arr in lr.history.arrays(nu).items():
        tensors[f"history.{k}"] = torch.from_numpy(arr)
    tensors["rng.tables"] = m.generator.get_state()
    tensors["rng.hard"] = lr.torch_gen.get_state()
    meta = {
        "users": lr.users.ids(),
        "items": lr.items.ids(),
        "counts": lr.counts.state(),
        "events_applied": lr.events_applied,
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
    lr.users = Vocabulary(meta["users"])
    lr.items = Vocabulary(meta["items"])
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
    lr.history.ensure(len(lr.users))
    lr.history.load({k: tensors[f"history.{k}"].numpy() for k in ("items", "next")})
    m.generator.set_state(tensors["rng.tables"])
    lr.torch_gen.set_state(tensors["rng.hard"])
    rng = json.loads(meta["rng"])
    lr.sampler.rng.bit_generator.state = rng["sampler"]
    lr.rng.bit_generator.state = rng["learner"]
    lr.progress.load(meta["progressive"])
    lr.events_applied = int(meta["events_applied"])
    lr.last_ts = int(meta["last_ts"])
    return lr
