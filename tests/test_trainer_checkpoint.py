"""Checkpoints: atomic, verified, the previous one kept, corrupt ones skipped with a warning."""

from __future__ import annotations

import logging

import pytest
import torch

from trainer.daemon.checkpoint import MANIFEST, STATE, CheckpointStore
from trainer.errors import CheckpointError


def _save(store: CheckpointStore, value: float):
    return store.save({"w": torch.full((4,), value)}, {"value": value})


def test_save_load_and_keep_two(tmp_path):
    store = CheckpointStore(tmp_path)
    for v in (1.0, 2.0, 3.0):
        _save(store, v)
    ckpt = store.latest()
    assert ckpt is not None and ckpt.id == 3 and ckpt.meta["value"] == 3.0
    assert torch.equal(ckpt.tensors()["w"], torch.full((4,), 3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-0000000002", "ckpt-0000000003"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-manifest"])
def test_corrupt_newest_falls_back_to_previous(tmp_path, caplog, damage):
    store = CheckpointStore(tmp_path)
    _save(store, 1.0)
    newest = _save(store, 2.0)
    state = newest.path / STATE
    if damage == "truncate":
        state.write_bytes(state.read_bytes()[:-7])
    elif damage == "flip":
        data = bytearray(state.read_bytes())
        data[-1] ^= 0xFF
        state.write_bytes(bytes(data))
    else:
        (newest.path / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING):
        ckpt = store.latest()
    assert ckpt is not None and ckpt.id == 1
    assert any("skipping checkpoint" in r.message for r in caplog.records)
    # the next checkpoint gets a fresh id above the damaged one
    assert store.next_id() == 3


def test_leftover_temp_dir_is_ignored_and_cleaned(tmp_path):
    store = CheckpointStore(tmp_path)
    (tmp_path / ".tmp-0000000005-99999").mkdir(parents=True)
    (tmp_path / ".tmp-0000000005-99999" / STATE).write_bytes(b"half")
    assert store.latest() is None
    _save(store, 1.0)
    assert not list(tmp_path.glob(".tmp-*"))


def test_unwritable_directory_is_a_clear_error(tmp_path):
    target = tmp_path / "file-not-dir"
    target.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write a checkpoint"):
        _save(CheckpointStore(target), 1.0)


def test_a_learner_round_trips_through_a_checkpoint_file(tmp_path):
    """State written by the checkpoint store loads back into the same model (0-d tensors, such
    as the optimiser's step counts, keep their shape)."""
    import numpy as np

    from tests.clustered import Clustered
    from trainer.core.learner import Learner
    from trainer.core.settings import ModelSettings

    s = ModelSettings(dim=8, layers=(8,), seed=2)
    learner = Learner(s)
    data = Clustered(seed=3)
    for _ in range(3):
        learner.learn(data.batch(128))
    tensors, meta = learner.state()
    ckpt = CheckpointStore(tmp_path).save(tensors, {"learner": meta})
    again = Learner.from_state(s, ckpt.tensors(), ckpt.meta["learner"])
    rows = np.sort(learner.users.admitted_rows())
    assert torch.equal(learner.scoring.scores(rows), again.scoring.scores(rows))
    nxt = data.batch(128)
    assert learner.learn(nxt).loss == again.learn(nxt).loss
