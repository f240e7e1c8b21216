"""Adagrad for the tower's dense weights, step for step what `torch.optim.Adagrad` does.

Why not torch's: creating a `torch.optim` optimizer imports `torch._dynamo` (seconds of a
trainer's start here), and the tower needs four lines of it. The update is torch's single-tensor
Adagrad (lr_decay 0, weight_decay 0, eps 1e-10): sum += g²; w -= lr·g / (√sum + eps), so a
model trained either way is the same to the bit, and checkpoints keep the same names
(``dense_opt.{i}.sum``, ``dense_opt.{i}.step``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainer.core.state import Arrays, as_tensor


class DenseAdagrad:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, eps: float = 1e-10):
        self.params = list(params)
        self.lr, self.eps = lr, eps
        self.sums = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.tensor(0.0) for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p, total, step in zip(self.params, self.sums, self.steps, strict=True):
            if p.grad is None:
                continue
            step += 1
            total.addcmul_(p.grad, p.grad, value=1)
            p.addcdiv_(p.grad, total.sqrt().add_(self.eps), value=-self.lr)

    def state(self) -> Arrays:
        out: Arrays = {}
        for k, (total, step) in enumerate(zip(self.sums, self.steps, strict=True)):
            out[f"{k}.sum"], out[f"{k}.step"] = total.clone(), step.clone()
        return out

    def load_state(self, arrays: Arrays) -> None:
        """From `state()`'s arrays (or torch Adagrad's, saved by recstream 0.1: the same)."""
        for key, value in arrays.items():
            k, name = key.split(".", 1)
            target = (self.sums if name == "sum" else self.steps)[int(k)]
            target.copy_(as_tensor(value))
