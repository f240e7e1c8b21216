"""Checkpoints: the single commit point of the trainer's state, written atomically.

Layout of a checkpoint directory:

    ckpt-0000000007/            one complete checkpoint (id 7); ids only grow
        state.safetensors       tensors: tables, optimiser state, counts, histories, RNG
        state.json              metadata: offsets, counters, vocabularies, settings
        serving.safetensors     the vectors the writer publishes (store.Snapshot)
        MANIFEST.json           written last: size and CRC-32C of every file above
    .tmp-0000000008-<pid>/      a checkpoint being written (ignored, removed later)

A checkpoint is written into a temp directory (each file fsynced), renamed into place, and the
parent directory fsynced; older ones are pruned only after the new one is complete, so a crash
at any point leaves the previous good checkpoint. A write that fails (disk full, permissions)
removes its temp directory and raises `CheckpointError`; the previous checkpoint stays.
Loading verifies the manifest and falls back to an older checkpoint, with a warning, if the
newest is truncated or corrupt; a checkpoint of a newer schema is an error, never skipped (that
would silently roll the model back). Tensors load through safetensors and metadata through
JSON: nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from store.atomic import fsync_dir, fsync_file
from trainer.daemon.tensorfile import blake2b_of, crc_of, write_tensors
from trainer.errors import CheckpointError

log = logging.getLogger(__name__)

# 2: the learner's parts save themselves (trainer.core.state); schema 1 still loads
SCHEMA = 2
STATE = "state.safetensors"
META = "state.json"
SERVING = "serving.safetensors"
MANIFEST = "MANIFEST.json"
_PREFIX = "ckpt-"


class NewerSchema(CheckpointError):
    """The checkpoint was written by a newer recstream."""


@dataclass(frozen=True)
class Checkpoint:
    id: int
    path: Path
    meta: dict[str, Any]

    def tensors(self) -> dict[str, torch.Tensor]:
        return load_file(self.path / STATE)


def _matches(path: Path, want: dict[str, Any]) -> bool:
    """The file's checksum is the manifest's (CRC-32C; blake2b in recstream 0.1's)."""
    if "crc32c" in want:
        return bool(crc_of(path) == want["crc32c"])
    return bool(blake2b_of(path) == want["blake2b"])


class CheckpointStore:
    """Writes and finds checkpoints in one directory. Keeps the newest `keep` (≥ 2)."""

    def __init__(self, directory: str | os.PathLike[str], keep: int = 2) -> None:
        self.dir = Path(directory)
        self.keep = max(2, keep)

    def _complete(self) -> list[tuple[int, Path]]:
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            if p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit():
                found.append((int(p.name[len(_PREFIX) :]), p))
        return sorted(found, reverse=True)

    def next_id(self) -> int:
        ids = [i for i, _ in self._complete()]
        return (max(ids) + 1) if ids else 1

    def save(
        self,
        tensors: dict[str, Any],
        meta: dict[str, Any],
        extra: dict[str, Callable[[Path], None]] | None = None,
        ckpt_id: int | None = None,
        before_manifest: Callable[[], None] | None = None,
    ) -> Checkpoint:
        """Write a new checkpoint atomically: `tensors` (numpy arrays or tensors), `meta`, and
        `extra` files (name -> writer)."""
        cid = ckpt_id if ckpt_id is not None else self.next_id()
        tmp = self.dir / f".tmp-{cid:010d}-{os.getpid()}"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            meta = {**meta, "schema": SCHEMA, "id": cid}
            size, crc = write_tensors(tmp / STATE, tensors)
            manifest = {STATE: {"size": size, "crc32c": crc}}
            (tmp / META).write_text(json.dumps(meta))
            for name, write in (extra or {}).items():
                write(tmp / name)
            for name in sorted(p.name for p in tmp.iterdir()):
                fsync_file(tmp / name)
                if name not in manifest:
                    manifest[name] = {
                        "size": (tmp / name).stat().st_size,
                        "crc32c": crc_of(tmp / name),
                    }
            if before_manifest is not None:  # a fault point of the tests (daemon/hooks.py)
                before_manifest()
            (tmp / MANIFEST).write_text(
                json.dumps({"schema": SCHEMA, "id": cid, "files": manifest})
            )
            fsync_file(tmp / MANIFEST)
            fsync_dir(tmp)
            final = self.dir / f"{_PREFIX}{cid:010d}"
            os.rename(tmp, final)
            fsync_dir(self.dir)
        except (OSError, SafetensorError) as e:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back
            raise CheckpointError(
                f"cannot write a checkpoint in {self.dir}: {e}; the previous checkpoint is kept. "
                "Check free space and permissions."
            ) from e
        self._prune()
        return Checkpoint(cid, final, meta)

    def _prune(self) -> None:
        for _, path in self._complete()[self.keep :]:
            shutil.rmtree(path, ignore_errors=True)
        for p in self.dir.glob(".tmp-*"):
            if not p.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(p, ignore_errors=True)

    @staticmethod
    def verify(path: Path, files: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The checkpoint's metadata if its manifest checks out (for `files`, default all)."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            for name, want in manifest["files"].items():
                if files is not None and name not in files:
                    continue
                p = path / name
                if p.stat().st_size != want["size"] or not _matches(p, want):
                    raise CheckpointError(f"{p} does not match its manifest (truncated or corrupt)")
            meta = json.loads((path / META).read_text())
            schema = int(manifest["schema"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path} is incomplete or corrupt: {e}") from e
        if schema > SCHEMA:
            raise NewerSchema(
                f"{path} has checkpoint schema {schema}, this recstream reads up to {SCHEMA}: "
                "upgrade recstream (an older checkpoint is not used instead: that would roll "
                "the model back)"
            )
        return dict(meta)

    def latest(self, files: tuple[str, ...] | None = None) -> Checkpoint | None:
        """The newest checkpoint that verifies; older ones are tried with a warning."""
        for cid, path in self._complete():
            try:
                return Checkpoint(cid, path, self.verify(path, files))
            except NewerSchema:
                raise
            except CheckpointError as e:
                log.warning("skipping checkpoint %s: %s", path.name, e)
        return None
