"""`recstream publish`: the writer, publishing checkpoints to Redis."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from store.retention import GRACE_S, KEEP
from trainer.cli.flags import REDIS, REDIS_TLS, SECTIONS, redis_options
from trainer.cli.options import add_options
from trainer.daemon.settings import (
    CHECKPOINT_DIR,
    CONNECT_TIMEOUT,
    METRICS_HOST,
    METRICS_PORT,
    TEST_MODE,
)
from trainer.options import Option, number, positive, seconds, seconds_or_zero, whole

if TYPE_CHECKING:
    from store import Writer

HELP = "the writer: publish checkpoints to Redis"
DESCRIPTION = (
    "Publish the newest checkpoint's item and user vectors to Redis as a new version and switch "
    "readers to it atomically."
)
OPTIONS = (
    CHECKPOINT_DIR,
    REDIS,
    Option("--watch", False, "keep running; publish each new checkpoint"),
    CONNECT_TIMEOUT,
    Option("--interval", 1.0, "--watch: seconds between looks", seconds, metavar="SECONDS"),
    Option("--keep", KEEP, "versions kept in Redis besides the current one's grace", positive),
    Option(
        "--grace",
        GRACE_S,
        "a replaced version is deleted no sooner than this",
        seconds_or_zero,
        metavar="SECONDS",
    ),
    Option(
        "--compact-every",
        10,
        "delta versions between full ones (0: every version full); an untouched item's "
        "popularity offset is at most this many checkpoints old",
        whole,
        check=(lambda n: n >= 0, "a whole number >= 0"),
    ),
    Option(
        "--delta-share",
        0.25,
        "write a full version when the deltas since the last one hold more rows (holes "
        "included) than this share of the table",
        number,
        check=(lambda x: 0 <= x <= 1, "a share between 0 and 1"),
    ),
    Option(
        "--index",
        "auto",
        "approximate index published with each version (ivf needs faiss-cpu: the serving "
        "extra); auto: ivf for 20,000 items or more when faiss is installed",
        choices=("auto", "ivf", "none"),
    ),
    Option(
        "--index-recall",
        0.95,
        "recall@100 against exact the writer tunes the index's nprobe for, on its own users",
        number,
        check=(lambda x: 0 < x <= 1, "a recall between 0 and 1"),
    ),
    Option(
        "--top-n",
        0,
        "store each active user's top-N as JSON in the version (0: none)",
        whole,
        check=(lambda n: n >= 0, "a whole number >= 0"),
    ),
    Option("--top-n-exact", False, "compute top-N lists by exact scan even with an index"),
    METRICS_PORT,
    METRICS_HOST,
    Option("--parent-pid", None, "the trainer that started this writer", whole, hidden=True),
    TEST_MODE,
    *REDIS_TLS,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS, SECTIONS)


def run(a: argparse.Namespace) -> int:
    from store import Writer
    from store.draft import Settings
    from trainer.daemon.publish import publish_latest, watch
    from trainer.testing import faults

    on_stage = None
    if a.test_mode:
        faults.arm()
        on_stage = lambda stage: faults.hit(f"publish-{stage}")  # noqa: E731
    writer = Writer.from_url(
        a.redis,
        namespace=a.namespace,
        keep=a.keep,
        grace_s=a.grace,
        on_stage=on_stage,
        settings=Settings(
            compact_every=a.compact_every,
            delta_share=a.delta_share,
            index=a.index,
            index_recall=a.index_recall,
            top_n=a.top_n,
            top_n_exact=a.top_n_exact,
        ),
        **redis_options(a),
    )
    if a.watch:
        from trainer.daemon.metrics import MetricsServer, WriterMetrics
        from trainer.daemon.publish import WatchStatus
        from trainer.daemon.waiting import wait_for

        if a.parent_pid is None:  # a trainer's writer child waits as long as its trainer runs
            wait_for(lambda left: _answers(writer), a.connect_timeout, setting="--redis")

        metrics, status, server = WriterMetrics(), WatchStatus(), None
        if a.metrics_port is not None:
            server = MetricsServer(metrics.registry, status.health, a.metrics_host, a.metrics_port)
        try:
            watch(
                a.checkpoint_dir,
                writer,
                a.namespace,
                a.interval,
                a.parent_pid,
                metrics=metrics,
                status=status,
            )
        finally:
            if server is not None:
                server.close()
        return 0
    version = publish_latest(a.checkpoint_dir, writer, a.namespace, force=True)
    if version is None:
        print(
            f"no complete checkpoint in {a.checkpoint_dir}; run `recstream train` first",
            file=sys.stderr,
        )
        return 1
    print(json.dumps({"published_version": version, "namespace": a.namespace}))
    return 0


def _answers(writer: Writer) -> None:
    """Returns once Redis answers, even with an error (`watch` retries those as ever); raises
    `store.Unreachable` while none does."""
    from store import StoreError, Unreachable

    try:
        writer.current_version()
    except Unreachable:
        raise
    except StoreError:
        pass
