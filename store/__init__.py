"""Item and user vectors in Redis: the trainer's snapshots in, vectors and top-k out.

- `Snapshot`, `save_snapshot`, `load_snapshot`: the file a checkpoint hands to the writer.
- `Writer`: publishes a snapshot as an immutable version and flips the current pointer.
- `Reader`: what downstream services import (`recommend`, `item_vectors`, ...).
- `Layout`: every key of a namespace; `RedisServer`: a local server for tests and demos.

The Redis-facing names load on first use, so `from store import Snapshot` (the trainer's side)
does not import redis-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from store.errors import (
    InvalidSnapshot,
    NoVersion,
    PublishError,
    StoreError,
    UnknownUser,
    Unreachable,
)
from store.layout import Layout
from store.snapshot import Snapshot, load_snapshot, save_snapshot
from store.table import Table

if TYPE_CHECKING:
    from store.reader import Reader
    from store.server import RedisServer, ping
    from store.writer import Writer

_LAZY = {
    "Reader": "store.reader",
    "Writer": "store.writer",
    "RedisServer": "store.server",
    "ping": "store.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'store' has no attribute {name!r}")


__all__ = [
    "InvalidSnapshot",
    "Layout",
    "NoVersion",
    "PublishError",
    "Reader",
    "RedisServer",
    "Snapshot",
    "StoreError",
    "Table",
    "UnknownUser",
    "Unreachable",
    "Writer",
    "load_snapshot",
    "ping",
    "save_snapshot",
]
