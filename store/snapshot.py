"""The hand-off between trainer and writer: one file of item and user vectors per checkpoint.

The file is safetensors (no pickle): the vectors as float32 tensors, the ids as uint8 tensors
holding a msgpack list of strings (so an id may contain any character, newlines included), and
version, created_ms, extra and a SHA-256 digest of the content in the header metadata.

>>> import numpy as np, tempfile, os
>>> snap = Snapshot(version=3, created_ms=0, item_ids=["a", "b"],
...                 item_vectors=np.eye(2, dtype=np.float32),
...                 user_ids=["u"], user_vectors=np.ones((1, 2), np.float32))
>>> path = os.path.join(tempfile.mkdtemp(), "v3.safetensors")
>>> save_snapshot(snap, path)
>>> load_snapshot(path) == snap
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import msgspec
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from store.atomic import atomic_path
from store.errors import InvalidSnapshot

FILE_FORMAT = "recstream-snapshot/1"
_IDS = msgspec.msgpack.Decoder(list[str])


@dataclass(frozen=True, eq=False)
class Snapshot:
    """Item and user vectors of one checkpoint; score(user, item) = dot(user, item).

    Validated on construction: one vector per id, unique ids, float32, one dim, finite values.
    The arrays are not copied (a non-contiguous one is made contiguous): don't mutate them.
    """

    version: int
    created_ms: int
    item_ids: list[str]
    item_vectors: np.ndarray
    user_ids: list[str]
    user_vectors: np.ndarray
    extra: dict[str, str] = field(default_factory=dict)
    tower: bytes = b""  # the query tower as published (store.tower.QueryTower.to_bytes)
    # A monotone stamp of each user's last activity, and the snapshot's own stamp: a writer
    # that published a version with stamp S rewrites only users stamped after S ("active
    # since the last publish") and carries the others over.
    user_stamps: np.ndarray | None = None
    stamp: int = 0
    # The same for items: the stamp at which each item's row last changed (vector, bias or
    # count). With it a writer may publish a delta version: only the rows stamped after its base.
    item_stamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("version", "created_ms", "stamp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise InvalidSnapshot(f"{name} must be an int >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        item_ids = _ids("item_ids", self.item_ids)
        user_ids = _ids("user_ids", self.user_ids)
        items = _vectors("item_vectors", self.item_vectors, item_ids)
        dim = items.shape[1]
        if dim == 0:
            raise InvalidSnapshot("item_vectors has dim 0: vectors need at least one component")
        users = self.user_vectors
        if isinstance(users, np.ndarray) and users.size == 0 and not user_ids:
            users = np.empty((0, dim), np.float32)  # no users: accept any empty array
        users = _vectors("user_vectors", users, user_ids)
        if users.shape[1] != dim:
            raise InvalidSnapshot(
                f"user_vectors have dim {users.shape[1]} but item_vectors have dim {dim}: "
                "fold biases into the vectors so that both towers have the same dim"
            )
        for name, ids in (("user_stamps", user_ids), ("item_stamps", item_ids)):
            stamps = getattr(self, name)
            if stamps is None:
                continue
            if not isinstance(stamps, np.ndarray) or stamps.shape != (len(ids),):
                raise InvalidSnapshot(
                    f"{name} must be an array of one int per id ({len(ids)}), "
                    f"got {getattr(stamps, 'shape', type(stamps).__name__)}"
                )
            object.__setattr__(self, name, stamps.astype(np.int64))
        if not isinstance(self.tower, bytes):
            raise InvalidSnapshot(f"tower must be bytes, got {type(self.tower).__name__}")
        extra = self.extra
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise InvalidSnapshot(f"extra must be a dict[str, str], got {extra!r}")
        for name, value in [
            ("item_ids", item_ids),
            ("user_ids", user_ids),
            ("item_vectors", items),
            ("user_vectors", users),
            ("extra", dict(extra)),
        ]:
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    @cached_property
    def digest(self) -> str:
        """SHA-256 of ids and vectors (not of version, created_ms or extra), hex."""
        h = hashlib.sha256(
            f"{FILE_FORMAT} {self.dim} {len(self.item_ids)} {len(self.user_ids)}\n".encode()
        )
        for ids, vectors in [
            (self.item_ids, self.item_vectors),
            (self.user_ids, self.user_vectors),
        ]:
            h.update(msgspec.msgpack.encode(ids))
            h.update(vectors.data)  # C-contiguous: hashed in place, no copy
        h.update(self.tower)
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        mine = (self.version, self.created_ms, self.extra, self.digest)
        return mine == (other.version, other.created_ms, other.extra, other.digest)

    __hash__ = None  # type: ignore[assignment]


def _ids(name: str, ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
        raise InvalidSnapshot(f"{name} must be a list of str, got {type(ids).__name__}")
    out = list(ids)
    if set(map(type, out)) - {str}:  # the slow path only when needed: 1M ids are common
        # str subclasses (numpy.str_) become plain str: msgpack encodes only exact str
        out = [str(i) if isinstance(i, str) else i for i in out]
        for pos, i in enumerate(out):
            if type(i) is not str:
                raise InvalidSnapshot(
                    f"{name}[{pos}] is {type(i).__name__} {i!r}: ids must be str (use str(id))"
                )
    if len(set(out)) != len(out):
        dup = next(i for i, n in Counter(out).items() if n > 1)
        raise InvalidSnapshot(f"{name} has duplicate id {dup!r}: each id needs exactly one vector")
    return out


def _vectors(name: str, array: np.ndarray, ids: list[str]) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        shape = getattr(array, "shape", type(array).__name__)
        raise InvalidSnapshot(f"{name} must be a 2-D numpy array (rows, dim), got {shape}")
    if array.dtype != np.float32:
        raise InvalidSnapshot(
            f"{name} has dtype {array.dtype}: convert with .astype(np.float32) "
            "(the store keeps float32 vectors)"
        )
    if array.shape[0] != len(ids):
        raise InvalidSnapshot(
            f"{name} has {array.shape[0]} rows but there are {len(ids)} ids: one row per id"
        )
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidSnapshot(
            f"{name} row {row} (id {ids[row]!r}) is not finite: {array[row][:8]}...; "
            f"{int((~finite).sum())} rows are. A NaN/inf vector must never be published: "
            "fix the model (learning rate? gradient clipping?) and take a new checkpoint"
        )
    return np.ascontiguousarray(array)


def save_snapshot(snap: Snapshot, path: str | os.PathLike[str]) -> None:
    """Write `snap` to `path` atomically (temp file, fsync, rename, fsync of the folder)."""
    tensors = {
        "item_vectors": snap.item_vectors,
        "user_vectors": snap.user_vectors,
        "item_ids": np.frombuffer(msgspec.msgpack.encode(snap.item_ids), np.uint8),
        "user_ids": np.frombuffer(msgspec.msgpack.encode(snap.user_ids), np.uint8),
        "tower": np.frombuffer(snap.tower, np.uint8),
    }
    for name in ("user_stamps", "item_stamps"):
        if getattr(snap, name) is not None:
            tensors[name] = getattr(snap, name)
    metadata = {
        "format": FILE_FORMAT,
        "version": str(snap.version),
        "created_ms": str(snap.created_ms),
        "extra": json.dumps(snap.extra, ensure_ascii=False),
        "digest": snap.digest,
        "stamp": str(snap.stamp),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot written by `save_snapshot`.

    A damaged or foreign file raises `InvalidSnapshot` naming the path; a missing one raises
    FileNotFoundError.
    """
    try:
        with safe_open(os.fspath(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise  # not damage: e.g. a checkpoint pruned meanwhile, which callers may skip
    except (SafetensorError, OSError, ValueError) as e:
        raise InvalidSnapshot(
            f"{path} is not a readable snapshot (truncated or corrupt?): {e}; "
            "re-export it from its checkpoint"
        ) from e
    if meta.get("format") != FILE_FORMAT:
        raise InvalidSnapshot(
            f"{path} has format {meta.get('format')!r}, expected {FILE_FORMAT!r}: "
            "write it with store.save_snapshot"
        )
    try:
        snap = Snapshot(
            version=int(meta["version"]),
            created_ms=int(meta["created_ms"]),
            item_ids=_IDS.decode(tensors["item_ids"].tobytes()),
            item_vectors=tensors["item_vectors"],
            user_ids=_IDS.decode(tensors["user_ids"].tobytes()),
            user_vectors=tensors["user_vectors"],
            extra=json.loads(meta["extra"]),
            tower=tensors["tower"].tobytes() if "tower" in tensors else b"",
            user_stamps=tensors.get("user_stamps"),
            stamp=int(meta.get("stamp", 0)),
            item_stamps=tensors.get("item_stamps"),
        )
    except (KeyError, ValueError, msgspec.DecodeError, InvalidSnapshot) as e:
        raise InvalidSnapshot(f"{path} is not a valid snapshot: {e}") from e
    if snap.digest != meta.get("digest"):
        raise InvalidSnapshot(
            f"{path} is corrupt: its content digest {snap.digest[:16]}... does not match the "
            f"recorded {str(meta.get('digest'))[:16]}...; re-export it from its checkpoint"
        )
    return snap
