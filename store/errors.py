"""The store's exceptions: catch `StoreError` for all of them.

Messages name the bad value and say what to do about it.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by `store` (a bad snapshot, Redis unreachable, ...)."""


class InvalidSnapshot(StoreError, ValueError):
    """A snapshot that must not be published: mismatched shapes, NaN, a corrupt file."""


class PublishError(StoreError):
    """A publish did not complete; the pointer to the current version was left untouched."""


class NoVersion(StoreError):
    """Nothing has been published under the namespace yet."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(
            f"nothing is published under namespace {namespace!r} yet: run `recstream publish` "
            "(or store.Writer.publish) to make a version, or check the namespace and Redis URL"
        )


class UnknownUser(StoreError):
    """The user has no vector in the current version (new user, or evicted from the model)."""

    def __init__(self, user: str, version: int, namespace: str) -> None:
        self.user = user
        self.version = version
        self.namespace = namespace
        super().__init__(
            f"user {user!r} has no vector in version {version} of namespace {namespace!r}: "
            "build a query vector for them (cold start) and call recommend_vector instead"
        )


class Unreachable(StoreError):
    """Redis did not answer at `address` (down, a wrong host or port, a network between)."""

    what = "Redis"

    def __init__(self, address: str, reason: str, setting: str | None = None) -> None:
        self.address, self.reason, self.setting = address, reason, setting
        named = f"that {setting} names it" if setting else "that the URL names it"
        super().__init__(
            f"cannot reach {self.what} at {address} ({reason}); check that it runs and {named}"
        )
