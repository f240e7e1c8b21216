"""`recstream status`: the trainer's state, from its newest checkpoint."""

from __future__ import annotations

import argparse
import json

from trainer.cli.options import add_options
from trainer.daemon.settings import CHECKPOINT_DIR

HELP = "the trainer's state, from its newest checkpoint (JSON)"
DESCRIPTION = (
    "Events applied and rejected, offsets, checkpoint time and the published version, read from "
    "the checkpoint directory alone (no Kafka, no Redis)."
)
OPTIONS = (CHECKPOINT_DIR,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def run(a: argparse.Namespace) -> int:
    from trainer.daemon.status import status

    print(json.dumps(status(a.checkpoint_dir, a.namespace), indent=2))
    return 0
