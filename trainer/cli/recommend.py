"""`recstream recommend`: top-k items for a user, read from Redis."""

from __future__ import annotations

import argparse
import json

from trainer.cli.flags import REDIS, REDIS_TLS, SECTIONS, redis_options
from trainer.cli.options import add_options
from trainer.errors import ConfigError
from trainer.options import Option, positive

HELP = "top-k items for a user, read from Redis (JSON)"
DESCRIPTION = (
    "Top-k for a user from its published vector; for a user without one (new, or not yet "
    "admitted), from --recent items and --context through the published query tower. Without "
    "--user: the cold-start answer alone."
)
OPTIONS = (
    Option("--user", None, "user id (an integer id is its decimal string)"),
    Option("--recent", "", "comma-separated recent item ids, oldest first"),
    Option("--context", "", 'context as JSON, e.g. {"device": "mobile"}'),
    Option("-k", 10, "how many items", positive),
    Option("--exclude", "", "comma-separated item ids to leave out"),
    Option("--approximate", False, "from the version's approximate index, not an exact scan"),
    Option("--precomputed", False, "the user's precomputed top-N list (publish --top-n)"),
    REDIS,
    *REDIS_TLS,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS, SECTIONS)


def run(a: argparse.Namespace) -> int:
    from store import Reader, UnknownUser

    try:
        context = json.loads(a.context) if a.context else None
    except ValueError as e:
        raise ConfigError(f"--context: not JSON ({e}); write e.g. '{{\"device\": 1}}'") from None
    if context is not None and not isinstance(context, dict):
        raise ConfigError(f"--context must be a JSON object, got {a.context!r}")
    reader = Reader.from_url(a.redis, namespace=a.namespace, **redis_options(a))
    exclude = [x for x in a.exclude.split(",") if x]
    recent = [x for x in a.recent.split(",") if x]
    exact = not a.approximate
    if a.precomputed:
        if a.user is None:
            raise ConfigError("--precomputed needs --user")
        print(json.dumps(reader.top_n(a.user)))
        return 0
    if a.user is not None:
        try:
            print(json.dumps(reader.recommend(a.user, k=a.k, exclude=exclude, exact=exact)))
            return 0
        except UnknownUser:
            if not recent and context is None:
                raise
    print(json.dumps(reader.recommend_for(recent, context, k=a.k, exclude=exclude, exact=exact)))
    return 0
