"""`recstream replay`: produce an event log into a Kafka topic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stream.defaults import TOPIC_PARTITIONS
from trainer.cli.flags import KAFKA_SECURITY_OPTIONS, SECTIONS, kafka_options
from trainer.cli.options import add_options
from trainer.daemon.settings import PROGRESS
from trainer.options import Option, number, positive

HELP = "produce an event log into a Kafka topic"
DESCRIPTION = (
    "Produce a JSONL (or .gz) event log into a topic, keyed by user, each line as it is (the "
    "trainer rejects bad lines into <topic>.dlq)."
)
OPTIONS = (
    Option("--to", None, "kafka://HOST:PORT/TOPIC", metavar="URI", required=True),
    Option("--rate", 0.0, "events/s limit; 0 = as fast as possible", number),
    Option(
        "--partitions",
        TOPIC_PARTITIONS,
        "partitions of the topic if it has to be created",
        positive,
    ),
    PROGRESS,
    *KAFKA_SECURITY_OPTIONS,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the log: JSONL, or .gz")
    add_options(parser, OPTIONS, SECTIONS)


def run(a: argparse.Namespace) -> int:
    from stream.replay import replay

    n = replay(
        a.path,
        a.to,
        rate=a.rate,
        partitions=a.partitions,
        progress=PROGRESS.setting(a.no_progress),
        client_options=kafka_options(a),
    )
    print(json.dumps({"produced": n, "to": a.to}))
    return 0
