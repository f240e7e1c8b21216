"""Least-privilege Redis ACL rules for the writer and the readers of one namespace.

The writer may run the commands `store.writer` uses, on the namespace's keys only; a reader may
only read them (``%R~``: read-only key access, Redis >= 7). Neither may touch other keys, run
administrative commands or subscribe to channels. Give each its own user:

    ACL SETUSER recstream-writer on >WRITER_PASSWORD <writer_rules("reco")>
    ACL SETUSER recstream-reader on >READER_PASSWORD <reader_rules("reco")>

and connect with ``redis://recstream-writer:WRITER_PASSWORD@host:6379/0`` (``rediss://`` for
TLS). `SCAN` (the writer's sweep of old versions) lists key names of the whole database: keep
other tenants in another database or server if their key names are secret.

>>> reader_rules("reco").split()[:4]
['resetkeys', '%R~reco:*', 'resetchannels', '-@all']
>>> " ".join(reader_rules("reco").split()[4:])
'+get +getrange +exists +hget +hmget +hgetall +multi +exec +ping'
"""

from __future__ import annotations

from store.layout import Layout

# What store.writer and store.reader send (MULTI/EXEC: their pipelines; EVALSHA, SCRIPT LOAD:
# the pointer flip; SCAN, UNLINK: the sweep of old versions; TIME: the server's clock; COPY: the
# users and top-N lists carried over from the previous version; EXISTS: a reader telling a
# deleted version from one published without a query tower; GETRANGE: one item's vector out of
# a chunk).
WRITER_COMMANDS = [
    *("get", "getrange", "set", "exists", "unlink", "scan", "time", "copy"),
    *("hset", "hget", "hdel", "hlen", "hmget", "hgetall"),
    *("zadd", "zrange", "zscore", "zrem"),
    *("multi", "exec", "ping", "evalsha", "eval", "script|load", "script|exists"),
]
READER_COMMANDS = [
    *("get", "getrange", "exists", "hget", "hmget", "hgetall", "multi", "exec", "ping"),
]


def writer_rules(namespace: str) -> str:
    """ACL rules for `recstream publish`: read and write the namespace's keys, nothing else."""
    ns = Layout(namespace).namespace
    return f"resetkeys ~{ns}:* resetchannels -@all " + " ".join(f"+{c}" for c in WRITER_COMMANDS)


def reader_rules(namespace: str) -> str:
    """ACL rules for services that read: read-only access to the namespace's keys."""
    ns = Layout(namespace).namespace
    return f"resetkeys %R~{ns}:* resetchannels -@all " + " ".join(f"+{c}" for c in READER_COMMANDS)


def acl_file_line(user: str, password: str, rules: str) -> str:
    """A line of a Redis ACL file (``aclfile``) for `user`."""
    if not user or any(c.isspace() for c in user) or any(c.isspace() for c in password):
        raise ValueError("ACL user names and passwords cannot be empty or contain whitespace")
    return f"user {user} on >{password} {rules}"
