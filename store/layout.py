"""Every Redis key of a namespace, in one place: the contract every client reads.

A namespace holds immutable, numbered versions and one pointer to the current one. A version is
*full* (it holds every item row) or a *delta* (it names a base and holds only the item rows that
changed since it); `chain` in its meta lists the versions whose rows make it up, newest first,
ending at a full one. Users and precomputed top-N lists are whole in every version (the base's
hash is copied server-side, then the users active since are rewritten): one HGET each.

| key | type | holds |
|---|---|---|
| `{ns}:current` | string | the current version number; the one pointer readers follow |
| `{ns}:versions` | sorted set | version → time (ms) it was first made current or recorded |
| `{ns}:retired` | hash | version → time (ms) it stopped being current (for the grace period) |
| `{ns}:v:{V}:meta` | hash | see META_FIELDS; `extra.{key}` per entry of `Snapshot.extra` |
| `{ns}:v:{V}:item` | hash | item id → its row (decimal) in V's own chunks; "" = removed in V |
| `{ns}:v:{V}:matrix:{c}` | string | float32 LE bytes of V's rows [c·R, (c+1)·R), R = chunk_rows |
| `{ns}:v:{V}:ids:{c}` | string | msgpack list of the ids of those rows |
| `{ns}:v:{V}:slots:{c}` | string | delta only: int32 LE, the table slot of each of those rows |
| `{ns}:v:{V}:removed` | string | delta only: int32 LE, table rows emptied by V (their items left) |
| `{ns}:v:{V}:lists:{c}` | string | with an index: int32 LE, the IVF list of each of those rows |
| `{ns}:v:{V}:centroids` | string | full with an index: float32 LE, nlist × dim IVF centroids |
| `{ns}:v:{V}:user` | hash | user id → its vector, float32 LE (4·dim bytes) |
| `{ns}:v:{V}:topn` | hash | with `top_n` > 0: user id → JSON [{"item": id, "score": s}, ...] |
| `{ns}:v:{V}:tower` | string | the query tower (spec + weights, `store.tower`), for new users |

An item's vector in version V: for each C in V's chain, HGET `{ns}:v:{C}:item` id; the first
answer wins ("" means the item is gone); it is row r of C's chunks: GETRANGE
`{ns}:v:{C}:matrix:{r // R}` from (r % R)·4·dim, 4·dim bytes. A version's table (what top-k
scores) is the full version's rows, then each delta applied oldest first: its `removed` rows
emptied, its rows written to their `slots`. Scores are dot products: score = user · item.

Rules the writer keeps and readers rely on:
- a version's meta is written last and its data is never changed once it has been current
  (republishing it is allowed only with byte-identical content);
- `{ns}:current` moves only after the version's data was read back and verified;
- a version is deleted by one UNLINK of all its keys, meta first, only after it has been
  non-current for the grace period and no kept version has it in its chain; so a reader that
  finds a version's meta after reading its data read that version's data, and a reader that
  finds a key missing re-reads the pointer.

>>> Layout("reco").item(7)
'reco:v:7:item'
>>> Layout("reco").matrix(7, 0)
'reco:v:7:matrix:0'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_NAMESPACE = "recstream"  # `--namespace` of every command
FORMAT = "2"  # bump when the meaning of these keys changes; readers refuse other formats

# Fields of `{ns}:v:{V}:meta` that the store itself writes; extra metadata is `extra.{key}`.
META_FIELDS = (
    "format",  # FORMAT
    "version",
    "dim",  # floats per vector
    "items",  # items in the version's table
    "slots",  # rows of the version's table, empty ones included (deltas leave holes)
    "users",  # users in the snapshot (the user hash may hold more: copied over)
    "created_ms",  # when the checkpoint was taken
    "published_ms",  # when the version was written (server time)
    "checksum",  # SHA-256 of the snapshot (`Snapshot.digest`): same content, same checksum
    "chunk_rows",  # R: rows per chunk, one value along a chain
    "chunks",  # chunks of this version's own rows
    "rows",  # this version's own rows (all items when full, the changed ones in a delta)
    "stamp",  # the snapshot's stamp: rows and users stamped after it are newer than V
    "base",  # the version this delta applies to, "" when full
    "chain",  # comma-separated versions whose rows make up V, newest first: "V,...,full"
    "removed",  # table rows this delta emptied
    "users_base",  # the version whose user (and top-N) hash was copied, or ""
    "index",  # "ivf" when the version has an approximate index, else ""
    "index_nlist",  # IVF lists
    "index_nprobe",  # lists to scan: the writer's choice for index_recall
    "index_recall",  # recall@100 against exact, measured by the writer on its own users
    "top_n",  # N of the precomputed top-N lists (0: none)
)
EXTRA_PREFIX = "extra."

# No glob characters (keys are matched with SCAN), no whitespace; braces are allowed so that a
# namespace can be a Redis Cluster hash tag such as "{reco}".
_NAMESPACE = re.compile(r"[A-Za-z0-9_.:/{}\-]{1,200}")
_DATA_KEY = re.compile(
    r"(\d+):(?:meta|item|user|topn|tower|removed|centroids|(?:matrix|ids|slots|lists):\d+)"
)


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

    def slots(self, version: int, chunk: int) -> str:
        return f"{self.prefix(version)}slots:{chunk}"

    def lists(self, version: int, chunk: int) -> str:
        return f"{self.prefix(version)}lists:{chunk}"

    def removed(self, version: int) -> str:
        return f"{self.prefix(version)}removed"

    def centroids(self, version: int) -> str:
        return f"{self.prefix(version)}centroids"

    def topn(self, version: int) -> str:
        return f"{self.prefix(version)}topn"

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
