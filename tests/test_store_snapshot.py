"""The snapshot file: round trip, validation, and refusal of damaged or foreign files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from store import InvalidSnapshot, Snapshot, StoreError, load_snapshot, save_snapshot

ODD_IDS = ["plain", "with\nnewline", "tab\there", "", "ünïcødé 🎧", "a\x00b", "42"]


def make(version: int = 1, n_items: int = 7, n_users: int = 3, dim: int = 5, **kw) -> Snapshot:
    rng = np.random.default_rng(abs(version))
    args = dict(
        version=version,
        created_ms=1_700_000_000_000,
        item_ids=(ODD_IDS + [f"i{j}" for j in range(n_items)])[:n_items],
        item_vectors=rng.standard_normal((n_items, dim), dtype=np.float32),
        user_ids=[f"u{j}" for j in range(n_users)],
        user_vectors=rng.standard_normal((n_users, dim), dtype=np.float32),
        extra={"model": "two-tower dim=4", "note": "ünï\ncode"},
    )
    args.update(kw)
    return Snapshot(**args)


def test_round_trip_keeps_every_byte_and_odd_ids(tmp_path):
    snap = make()
    path = tmp_path / "v1.safetensors"
    save_snapshot(snap, path)
    back = load_snapshot(path)
    assert back.item_ids == ODD_IDS
    assert back.user_ids == snap.user_ids
    assert back.item_vectors.tobytes() == snap.item_vectors.tobytes()
    assert back.user_vectors.tobytes() == snap.user_vectors.tobytes()
    assert (back.version, back.created_ms, back.extra) == (1, snap.created_ms, snap.extra)
    assert back.dim == 5 and back.item_vectors.dtype == np.float32
    assert back == snap and back.digest == snap.digest
    assert os.listdir(tmp_path) == ["v1.safetensors"]  # no temp file left behind


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "s.safetensors"
    save_snapshot(make(version=1), path)
    save_snapshot(make(version=2), path)
    assert load_snapshot(path).version == 2


def test_no_users_is_fine(tmp_path):
    snap = make(n_users=0, user_ids=[], user_vectors=np.empty((0, 0), np.float32))
    assert snap.user_vectors.shape == (0, 5)
    save_snapshot(snap, tmp_path / "s")
    assert load_snapshot(tmp_path / "s").user_ids == []


def test_digest_covers_vectors_and_ids_but_not_metadata():
    snap = make()
    assert make(version=1, extra={}, created_ms=5).digest == snap.digest
    flipped = snap.item_vectors.copy()
    flipped.view(np.uint32)[3, 2] ^= 1  # one bit of one float
    assert make(item_vectors=flipped).digest != snap.digest
    assert make(item_ids=[*ODD_IDS[:-1], "43"]).digest != snap.digest


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_rejected(bad):
    items = make().item_vectors.copy()
    items[4, 1] = bad
    with pytest.raises(InvalidSnapshot, match=r"item_vectors row 4 \(id 'ünïcødé 🎧'\)"):
        make(item_vectors=items)
    users = make().user_vectors.copy()
    users[2, 0] = bad
    with pytest.raises(InvalidSnapshot, match="user_vectors row 2"):
        make(user_vectors=users)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"item_ids": ["a", "b"]}, "item_vectors has 7 rows but there are 2 ids"),
        ({"user_vectors": np.zeros((3, 4), np.float32)}, "user_vectors have dim 4"),
        ({"item_vectors": np.zeros((7, 5))}, r"dtype float64: convert with \.astype"),
        ({"item_ids": ["x"] * 7}, "duplicate id 'x'"),
        ({"user_ids": ["u0", 1, "u2"]}, r"user_ids\[1\] is int 1: ids must be str"),
        ({"item_vectors": np.zeros(7, np.float32)}, "must be a 2-D numpy array"),
        ({"item_vectors": np.zeros((7, 0), np.float32)}, "dim 0"),
        ({"version": -1}, "version must be an int >= 0"),
        ({"extra": {"k": 1}}, r"extra must be a dict\[str, str\]"),
    ],
)
def test_invalid_snapshots_say_what_is_wrong(change, message):
    with pytest.raises(InvalidSnapshot, match=message):
        make(**change)


def test_numpy_str_ids_become_str_and_non_contiguous_arrays_are_accepted():
    items = np.asfortranarray(make().item_vectors)
    snap = make(item_ids=list(np.array(ODD_IDS)), item_vectors=items)
    assert all(type(i) is str for i in snap.item_ids)
    assert snap.item_vectors.flags.c_contiguous


@pytest.mark.parametrize("keep", [0, 7, 100, -200, -1])
def test_truncated_file_raises_store_error_naming_the_path(tmp_path, keep):
    path = tmp_path / "v1.safetensors"
    save_snapshot(make(n_items=7, dim=64), path)
    data = path.read_bytes()
    path.write_bytes(data[:keep])  # the first `keep` bytes, or all but the last -keep
    with pytest.raises(StoreError, match=r"v1\.safetensors"):
        load_snapshot(path)


def test_a_flipped_bit_in_the_data_is_caught_by_the_digest(tmp_path):
    path = tmp_path / "v1.safetensors"
    save_snapshot(make(), path)
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    start, _ = json.loads(data[8 : 8 + header_len])["item_vectors"]["data_offsets"]
    data[8 + header_len + start + 9] ^= 0x01  # one bit of one float: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidSnapshot, match="corrupt"):
        load_snapshot(path)


def test_missing_file_and_pickles_are_refused_without_unpickling(tmp_path):
    with pytest.raises(FileNotFoundError):  # not damage: the publisher skips a pruned checkpoint
        load_snapshot(tmp_path / "nope")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(StoreError, match=r"evil\.safetensors"):
        load_snapshot(path)
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_trainer_side_imports_neither_redis_nor_other_packages():
    code = (
        "import sys\n"
        "from store import Snapshot, load_snapshot, save_snapshot\n"
        "assert 'redis' not in sys.modules, 'store.Snapshot pulled in redis'\n"
        "import store.reader, store.writer, store.server\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('trainer', 'stream'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
