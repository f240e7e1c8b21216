"""`recstream replay`: produce an event log (JSONL, CSV, TSV or Parquet) into a Kafka topic."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream.defaults import TOPIC_PARTITIONS
from trainer.cli.flags import (
    KAFKA_SECURITY_OPTIONS,
    LOG_FORMAT_OPTIONS,
    SECTIONS,
    kafka_options,
    log_format,
)
from trainer.cli.options import add_options
from trainer.daemon.settings import PROGRESS
from trainer.options import Option, number, path, positive

HELP = "produce an event log into a Kafka topic"
DESCRIPTION = (
    "Produce an event log into a topic, keyed by user, the event time as the record timestamp. "
    "A JSONL log (or .gz) goes line by line as it is (the trainer rejects bad lines into "
    "<topic>.dlq); a CSV, TSV or Parquet file, or a JSONL log read through --map, is mapped to "
    "the event format and validated here: a bad row goes to the --dead-letter file with its row "
    "number and the reason, and the replay goes on."
)
OPTIONS = (
    Option("--to", None, "kafka://HOST:PORT/TOPIC", metavar="URI", required=True),
    Option("--rate", 0.0, "events/s limit; 0 = as fast as possible", number, metavar="R"),
    Option(
        "--speed",
        0.0,
        "produce at X times the pace the events happened (the gaps between their timestamps; "
        "1 = real time, 60 = an hour a minute); 0 = as fast as possible; with --rate, both hold",
        number,
        metavar="X",
    ),
    Option(
        "--partitions",
        TOPIC_PARTITIONS,
        "partitions of the topic if it has to be created",
        positive,
    ),
    Option(
        "--dead-letter",
        "dead-letter.jsonl",
        "where rows that fail validation go, one JSON object each (reason, row, raw); appended",
        path,
        metavar="PATH",
    ),
    PROGRESS,
    *LOG_FORMAT_OPTIONS,
    *KAFKA_SECURITY_OPTIONS,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", type=Path, help="the log: JSONL, CSV, TSV (each may be .gz), Parquet"
    )
    add_options(parser, OPTIONS, SECTIONS)


def run(a: argparse.Namespace) -> int:
    from stream.replay import replay

    done = replay(
        a.path,
        a.to,
        rate=a.rate,
        speed=a.speed,
        partitions=a.partitions,
        progress=PROGRESS.setting(a.no_progress) and sys.stderr.isatty(),
        client_options=kafka_options(a),
        log_format=log_format(a),
        dead_letter=a.dead_letter,
    )
    summary = {
        "produced": done.produced,
        "to": a.to,
        "rejected": done.rejected,
        "dropped_below_min_weight": done.dropped,
        "dead_letter": done.dead_letter if done.rejected else None,
        "first_ts": done.first_ts,
        "last_ts": done.last_ts,
        "seconds": round(done.seconds, 3),
        "events_per_s": round(done.produced / max(done.seconds, 1e-9), 1),
    }
    print(json.dumps(summary))
    return 0
