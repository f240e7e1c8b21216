"""`recstream`: one console script; a module per command parses its flags, builds and runs.

Each command module (`trainer.cli.train`, ...) has ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``. Exit codes: 0 done, 1 a service could not be
reached (or nothing to publish), 2 a bad setting or another error the command explains.
"""

from __future__ import annotations

import argparse
import logging
import sys

from trainer.cli import acl, demo, generate, publish, recommend, replay, status, train
from trainer.cli.flags import COMMON
from trainer.cli.options import add_options
from trainer.cli.resolve import resolve
from trainer.errors import ConfigError

COMMANDS = {
    "demo": demo,
    "generate": generate,
    "replay": replay,
    "train": train,
    "publish": publish,
    "recommend": recommend,
    "status": status,
    "acl": acl,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recstream",
        description="Streaming trainer for a two-tower softmax recommender: "
        "events from Kafka (or a log) in, item and user vectors in Redis out.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(p)
        add_options(p, COMMON)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = resolve(parser, argv)
    except ConfigError as e:
        print(f"recstream: {e}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(args.log_level)
    if args.log_level != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    import store
    import stream
    from trainer.errors import TrainerError

    try:
        return COMMANDS[args.command].run(args)
    except (stream.Unreachable, store.Unreachable) as e:
        print(f"recstream {args.command}: {e}", file=sys.stderr)
        return 1
    except (TrainerError, stream.StreamError, store.StoreError) as e:
        print(f"recstream {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
