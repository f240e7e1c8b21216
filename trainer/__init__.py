"""The trainer: a streaming learner for a two-tower softmax recommender, and its daemon.

- `trainer.core`: the pure learner (`Learner`, `ModelSettings`, `EventColumns`): ids, numbers
  and tensors in, tensors and figures out; no Kafka, Redis, files or threads.
- `trainer.daemon`: the I/O shell (`Trainer`, `TrainSettings`): source → learner →
  checkpoint → offsets, the writer process, metrics, the standby lock.
- `trainer.cli`: the `recstream` command line; `trainer.testing`: test-mode hooks.

The public names load on first use, so `import trainer` does not load torch.

    >>> from trainer import Learner, ModelSettings
    >>> Learner(ModelSettings(dim=8)).events_applied
    0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.core.columns import EventColumns, StepStats
    from trainer.core.learner import Learner
    from trainer.core.settings import ModelSettings
    from trainer.daemon.loop import Trainer
    from trainer.daemon.settings import TrainSettings

_PUBLIC = {
    "EventColumns": "trainer.core.columns",
    "StepStats": "trainer.core.columns",
    "Learner": "trainer.core.learner",
    "ModelSettings": "trainer.core.settings",
    "Trainer": "trainer.daemon.loop",
    "TrainSettings": "trainer.daemon.settings",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")


__all__ = ["EventColumns", "Learner", "ModelSettings", "StepStats", "TrainSettings", "Trainer"]
