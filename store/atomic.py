"""Files that appear whole or not at all, and stay after a crash: temp file, fsync, rename, fsync.

A rename replaces the target in one step, so a reader sees the old file or the new one; the
fsync of the file before the rename and of its folder after it make both the content and the
rename survive a power cut. Snapshots, checkpoints and the writer's published-version note are
written this way.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "note.json"
>>> atomic_write_bytes(path, b'{"version": 3}')
>>> path.read_bytes(), sorted(p.name for p in path.parent.iterdir())
(b'{"version": 3}', ['note.json'])
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's content to disk."""
    fd = os.open(path, os.O_RDWR)  # some systems refuse fsync on a read-only descriptor
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries to disk, e.g. a file renamed into it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp path beside `path` to write to; on a clean exit it is fsynced and renamed onto
    `path`, then the folder is fsynced. On an error the temp file is removed and `path` is left
    as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data`, atomically and durably (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
