"""`recstream generate`: a synthetic event stream as JSONL."""

from __future__ import annotations

import argparse
import json

from trainer.cli.options import add_options
from trainer.errors import ConfigError
from trainer.options import Option, number, path, positive, whole

HELP = "write a synthetic event stream (JSONL)"
DESCRIPTION = (
    "A synthetic stream: Zipf-like item popularity and user taste clusters, timestamps "
    "increasing and ending now."
)
OPTIONS = (
    Option(
        "--output",
        None,
        "output file (.gz compresses)",
        path,
        metavar="PATH",
        required=True,
        short="-o",
    ),
    Option("--users", 10_000, "users", positive),
    Option("--items", 5_000, "items", positive),
    Option("--events", 100_000, "events", positive),
    Option("--clusters", 8, "user taste clusters", positive),
    Option(
        "--affinity",
        0.8,
        "share of events inside the user's cluster (1.0 = disjoint groups)",
        number,
    ),
    Option("--seed", 0, "seed of the stream", whole),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def run(a: argparse.Namespace) -> int:
    from stream.synthetic import World, generate, write_jsonl

    try:
        world = World(
            users=a.users, items=a.items, clusters=a.clusters, affinity=a.affinity, seed=a.seed
        )
    except ValueError as e:  # sizes that do not fit together
        raise ConfigError(str(e)) from None
    n = write_jsonl(a.output, generate(world, a.events))
    print(json.dumps({"events": n, "path": str(a.output)}))
    return 0
