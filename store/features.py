"""Feature hashing shared by the trainer and the reader: one function, so both agree.

A categorical value becomes a bucket row `crc32("field=value") % buckets` — stable across
processes and machines (Python's hash() is salted per process). Values are formatted with
str(): the integer 3 and the string "3" share a bucket; the float 3.0 does not.
"""

from __future__ import annotations

import zlib


def feature_key(field: str, value: str | int | float) -> bytes:
    return f"{field}={value}".encode()


def bucket_of(field: str, value: str | int | float, buckets: int) -> int:
    """
    >>> bucket_of("device", "mobile", 1000) == bucket_of("device", "mobile", 1000)
    True
    >>> 0 <= bucket_of("hour", 13, 64) < 64
    True
    """
    return zlib.crc32(feature_key(field, value)) % buckets
