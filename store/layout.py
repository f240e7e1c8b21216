"""Every Redis key of a namespace, in one place.

A namespace holds immutable, numbered versions and one pointer to the current one:

| key | type | holds |
|---|---|---|
| `{ns}:current` | string | the current version number; the one pointer readers follow |
| `{ns}:versions` | sorted set | version → time (ms) it was first made current or recorded |
| `{ns}:retired` | hash | version → time (ms) it stopped being current (for the grace period) |
| `{ns}:v:{V}:meta` | hash | format, version, dim, items, users, created_ms, published_ms, |
| | | checksum, chunk_rows, chunks, stamp, users_base (the version its users were copied |
| | | from, or empty), and `extra.{key}` per entry of `Snapshot.extra` |
| `{ns}:v:{V}:item` | hash | item id → its vector as little-endian float32 bytes (4·dim) |
| `{ns}:v:{V}:user` | hash | user id → its vector, same encoding (users not active since the |
| | | previous version keep that version's vector: copied over, see `stamp`) |
| `{ns}:v:{V}:tower` | string | the query tower (spec + weights, `store.tower`), for new users |
| `{ns}:v:{V}:matrix:{c}` | string | float32 bytes of item rows [c·R, (c+1)·R), R = chunk_rows |
| `{ns}:v:{V}:ids:{c}` | string | msgpack list of the ids of those rows |

The chunks hold the whole item table, so a reader loads it for exact top-k in one round trip
per 16 chunks; the hashes serve lookups of single ids. The checksum is the SHA-256 of the
snapshot's ids and vectors (`Snapshot.digest`): it tells whether a republished version has the
same content.

Rules the writer keeps and readers rely on:
- a version's meta is written last and its data is never changed once it has been current
  (republishing it is allowed only with byte-identical content);
- `{ns}:current` moves only after the version's data was read back and verified;
- a version is deleted by one UNLINK of all its keys, meta first, and only after it has been
  non-current for the grace period; so a reader that finds a version's meta after reading its
  data read that version's data, and a reader that finds a key missing re-reads the pointer.

>>> Layout("reco").item(7)
'reco:v:7:item'
>>> Layout("reco").matrix(7, 0)
'reco:v:7:matrix:0'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_NAMESPACE = "recstream"  # `--namespace` of every command
FORMAT = "1"  # bump when the meaning of these keys changes; readers refuse other formats

# Fields of `{ns}:v:{V}:meta` that the store itself writes; extra metadata is `extra.{key}`.
META_FIELDS = (
    "format",
    "version",
    "dim",
    "items",
    "users",
    "created_ms",
    "published_ms",
    "checksum",
    "chunk_rows",
    "chunks",
    "stamp",
    "users_base",
)
EXTRA_PREFIX = "extra."

# No glob characters (keys are matched with SCAN), no whitespace; braces are allowed so that a
# namespace can be a Redis Cluster hash tag such as "{reco}".
_NAMESPACE = re.compile(r"[A-Za-z0-9_.:/{}\-]{1,200}")
_DATA_KEY = re.compile(r"(\d+):(?:meta|item|user|tower|matrix:\d+|ids:\d+)")


@dataclass(frozen=True)
class Layout:
    """Key names of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(
                f"namespace {self.namespace!r} is not usable as a Redis key prefix: use 1-200 "
                "characters from letters, digits and _ . : / - { }"
            )

    @property
    def current(self) -> str:
        return f"{self.namespace}:current"

    @property
    def versions(self) -> str:
        return f"{self.namespace}:versions"

    @property
    def retired(self) -> str:
        return f"{self.namespace}:retired"

    def prefix(self, version: int) -> str:
        """The prefix of every data key of `version`."""
        return f"{self.namespace}:v:{version}:"

    def meta(self, version: int) -> str:
        return f"{self.prefix(version)}meta"

    def item(self, version: int) -> str:
        return f"{self.prefix(version)}item"

    def user(self, version: int) -> str:
        return f"{self.prefix(version)}user"

    def tower(self, version: int) -> str:
        return f"{self.prefix(version)}tower"

    def matrix(self, version: int, chunk: int) -> str:
        return f"{self.prefix(version)}matrix:{chunk}"

    def ids(self, version: int, chunk: int) -> str:
        return f"{self.prefix(version)}ids:{chunk}"

    def chunk_keys(self, version: int, chunks: int) -> list[str]:
        """The matrix and ids keys of a version with `chunks` chunks."""
        return [k for c in range(chunks) for k in (self.matrix(version, c), self.ids(version, c))]

    @property
    def data_pattern(self) -> str:
        """SCAN pattern matching every data key of every version (and maybe foreign keys)."""
        return f"{self.namespace}:v:*"

    def version_of(self, key: str) -> int | None:
        """The version a data key belongs to, or None for a key that is not one of ours.

        >>> Layout("reco").version_of("reco:v:12:matrix:3"), Layout("reco").version_of("reco:v:x")
        (12, None)
        """
        head = f"{self.namespace}:v:"
        match = _DATA_KEY.fullmatch(key, len(head)) if key.startswith(head) else None
        return None if match is None else int(match.group(1))


def chunk_bounds(rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the chunks of a table with `rows` rows.

    >>> chunk_bounds(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(s, min(s + chunk_rows, rows)) for s in range(0, rows, chunk_rows)]
