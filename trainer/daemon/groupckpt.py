"""A group's checkpoint: one directory, one part per rank, committed by one rename.

Every rank writes, into the group's temp directory on storage all ranks see, its part: its own
user side (`groupstate.split`), its partitions' next offsets, what it rejected, its test files.
Rank 0 also writes the shared part (the item side and the tower, once), the serving vectors
(its items, every rank's users, gathered) and the metadata a single trainer's checkpoint has
(offsets of every partition, counters: `status` and the writer read it as they read one
trainer's). Then rank 0 writes the manifest of every file and renames the directory into place:
that rename is the single commit point. Only then does each rank commit its offsets to Kafka.
A crash anywhere before the rename leaves the previous checkpoint; every rank restarts from it.

Restoring, with any number of ranks: the shared part, and from every part the users this rank
owns now (`groupstate.merge`); a single trainer's checkpoint is a group of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from store.atomic import fsync_dir, fsync_file
from stream import EventSource, SourceError
from trainer.core.learner import Learner
from trainer.core.settings import ModelSettings
from trainer.core.state import Arrays, Meta, jsonable
from trainer.daemon.checkpoint import (
    MANIFEST,
    META,
    SCHEMA,
    SERVING,
    STATE,
    Checkpoint,
    CheckpointStore,
)
from trainer.daemon.group import Membership
from trainer.daemon.groupstate import merge, split
from trainer.daemon.hooks import Hooks
from trainer.daemon.serving import to_snapshot, user_vectors
from trainer.daemon.settings import TrainSettings
from trainer.daemon.tensorfile import crc_of, write_tensors
from trainer.errors import CheckpointError

log = logging.getLogger(__name__)


def replicated_digest(shared: Any) -> str:
    """A CRC-32C over the replicated arrays (what must be the same on every rank)."""
    import crc32c
    import numpy as np

    from trainer.core.state import as_numpy

    crc = 0
    for name in sorted(shared):
        crc = crc32c.crc32c(name.encode(), crc)
        crc = crc32c.crc32c(np.ascontiguousarray(as_numpy(shared[name])).tobytes(), crc)
    return f"{crc:08x}"


def part_name(rank: int, what: str) -> str:
    return f"part-{rank}.{what}"


def state_for(ckpt: Checkpoint, rank: int, world: int, model: ModelSettings) -> tuple[Arrays, Meta]:
    """The learner state of rank `rank` of a group of `world` from a checkpoint written by a
    group of any size, or by a single trainer (a group of one); `world` 1 is a single
    trainer's whole state."""
    if "group" not in ckpt.meta and world == 1:  # a single trainer's, read by one
        return dict(ckpt.tensors()), ckpt.meta["learner"]
    shared: Arrays = dict(ckpt.tensors())
    parts: list[tuple[Arrays, Meta]] = []
    if "group" in ckpt.meta:
        for r in range(int(ckpt.meta["group"]["world"])):
            arrays = load_file(str(ckpt.path / part_name(r, "safetensors")))
            meta = json.loads((ckpt.path / part_name(r, "json")).read_text())
            parts.append((dict(arrays), meta["learner"]))
        shared_meta = ckpt.meta["learner"]
    else:  # a single trainer's checkpoint: a group of one
        shared, shared_meta, own, own_meta = split(shared, ckpt.meta["learner"])
        parts.append((own, own_meta))
    return merge(shared, shared_meta, parts, rank, world, model)


class GroupCheckpointer:
    def __init__(self, s: TrainSettings, group: Membership, hooks: Hooks) -> None:
        self.s, self.group, self.hooks = s, group, hooks
        self.store = CheckpointStore(s.checkpoint_dir)

    # ---- restore ---------------------------------------------------------------------------
    def restore(self) -> tuple[Learner, dict[str, int], dict[str, str], int, int | None]:
        """(learner, offsets of every partition, identity, rejected, checkpoint id)."""
        g = self.group
        learner = Learner(self.s.model, sync=g.sync)
        ckpt = self.store.latest()
        if ckpt is None:
            return learner, {}, {}, 0, None
        mismatch = self.s.model.shape_mismatch(ckpt.meta["settings"])
        if mismatch:
            raise CheckpointError(f"{mismatch} (in {self.s.checkpoint_dir})")
        arrays, meta = state_for(ckpt, g.rank, g.world, self.s.model)
        learner.load_state(arrays, meta)
        self.hooks.restored(ckpt, g.rank, g.world)
        log.info(
            "rank %d resumed from checkpoint %d: %d events applied, %d users of its own",
            g.rank,
            ckpt.id,
            learner.events_applied,
            len(learner.users),
        )
        rejected = int(ckpt.meta["events_rejected"]) if g.rank == 0 else 0  # rank 0 carries it
        return learner, dict(ckpt.meta["offsets"]), dict(ckpt.meta["identity"]), rejected, ckpt.id

    # ---- write -----------------------------------------------------------------------------
    def checkpoint(
        self,
        learner: Learner,
        source: EventSource,
        offsets: dict[str, int],
        identity: dict[str, str],
        rejected: int,
    ) -> int | None:
        """Every rank at the same step: write the group checkpoint, then commit this rank's
        offsets; the new checkpoint's id, or None (an alarm) if any rank failed."""
        g, sync = self.group, self.group.sync
        cid = sync.share(self.store.next_id() if g.rank == 0 else None)[0]
        tmp = self.s.checkpoint_dir / f".tmp-{cid:010d}-group"
        problem = None
        files: dict[str, Any] = {}
        try:
            source.flush()  # dead letters durable before the offsets that skip them
            if g.rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
        except (OSError, SourceError) as e:
            problem = f"rank {g.rank}: {e}"
        problems = sync.share(problem)  # the directory exists before anyone writes into it
        arrays, meta = learner.state(copy=False)
        shared, shared_meta, own, own_meta = split(arrays, meta)
        if not any(problems):
            try:
                files = self._write_part(tmp, own, own_meta, offsets, rejected)
            except OSError as e:
                problem = f"rank {g.rank}: {e}"
        users = user_vectors(learner)
        digest = replicated_digest(shared)
        gathered = sync.share((problem, files, offsets, identity, rejected, users, digest))
        done = None
        if g.rank == 0:  # its progressive figures stand for the group's in `status`
            summary = jsonable({**shared_meta, "progressive": own_meta["progressive"]})
            done = self._commit(tmp, cid, learner, shared, summary, gathered)
        cid_done = sync.share(done)[0]
        if cid_done is None:
            log.error("ALARM group checkpoint %d failed; the previous one stays the newest", cid)
            return None
        self.hooks.hit("after-checkpoint")
        try:
            source.commit(dict(offsets))
        except SourceError as e:
            log.warning("offsets of checkpoint %d not committed: %s", cid, e)
        return int(cid_done)

    def _write_part(
        self, tmp: Path, own: Any, own_meta: Any, offsets: dict[str, int], rejected: int
    ) -> dict[str, Any]:
        r = self.group.rank
        size, crc = write_tensors(tmp / part_name(r, "safetensors"), own)
        files = {part_name(r, "safetensors"): {"size": size, "crc32c": crc}}
        meta = {"learner": jsonable(own_meta), "offsets": offsets, "rejected": rejected}
        extra = {part_name(r, "json"): lambda p: p.write_text(json.dumps(meta))}
        for name, write in self.hooks.checkpoint_files().items():
            extra[part_name(r, name)] = write
        for name, write in extra.items():
            write(tmp / name)
            fsync_file(tmp / name)
            files[name] = {"size": (tmp / name).stat().st_size, "crc32c": crc_of(tmp / name)}
        fsync_file(tmp / part_name(r, "safetensors"))
        self.hooks.hit("checkpoint-write")
        return files

    def _commit(
        self, tmp: Path, cid: int, learner: Learner, shared: Any, shared_meta: Any, gathered: Any
    ) -> int | None:
        """Rank 0: the shared part, the serving vectors, the manifest, the rename."""
        failed = [p for p, *_ in gathered if p]
        if failed:
            log.error("group checkpoint %d: %s", cid, "; ".join(failed))
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        try:
            offsets: dict[str, int] = {}
            identity: dict[str, str] = {}
            manifest: dict[str, Any] = {}
            ids, vecs, stamps = [], [], []
            import numpy as np

            digests = [d for *_, d in gathered]
            if len(set(digests)) > 1:  # a replicated part differs: the group has diverged
                log.error("ALARM the ranks' replicated state differs: %s", digests)
            for _, files, offs, ident, _, (u_ids, u_vecs, u_stamps), _ in gathered:
                manifest.update(files)
                offsets.update(offs)
                identity.update(ident)
                ids += u_ids
                vecs.append(u_vecs)
                stamps.append(u_stamps)
            size, crc = write_tensors(tmp / STATE, shared)
            manifest[STATE] = {"size": size, "crc32c": crc}
            model = self.s.model
            settings = asdict(model)
            settings["negatives"] = ",".join(str(n) for n in model.negatives)
            created_ms = time.time_ns() // 1_000_000
            meta = {
                "created_ms": created_ms,
                "offsets": offsets,
                "identity": identity,
                "events_applied": learner.events_applied,
                "events_rejected": sum(g[4] for g in gathered),
                "source": self.s.source,
                "settings": settings,
                "learner": shared_meta,
                "group": {"world": self.group.world, "users": len(ids), "digests": digests},
                "schema": SCHEMA,
                "id": cid,
            }
            (tmp / META).write_text(json.dumps(meta))
            from store import save_snapshot

            extra = {"model": f"two-tower dim={model.dim} layers={list(model.layers)}"}
            users = (ids, np.concatenate(vecs), np.concatenate(stamps))
            save_snapshot(to_snapshot(learner, cid, created_ms, extra, users), tmp / SERVING)
            for name in (META, SERVING):
                fsync_file(tmp / name)
                size = (tmp / name).stat().st_size
                manifest[name] = {"size": size, "crc32c": crc_of(tmp / name)}
            (tmp / MANIFEST).write_text(
                json.dumps({"schema": SCHEMA, "id": cid, "files": manifest})
            )
            fsync_file(tmp / MANIFEST)
            fsync_dir(tmp)
            os.rename(tmp, self.s.checkpoint_dir / f"ckpt-{cid:010d}")
            fsync_dir(self.s.checkpoint_dir)
        except OSError as e:
            log.error("group checkpoint %d: %s", cid, e)
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        self.store._prune()
        return cid


__all__ = ["Checkpoint", "GroupCheckpointer"]
