"""`recstream train`: the trainer daemon."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

from trainer.cli.flags import (
    KAFKA_SECURITY_OPTIONS,
    LOG_FORMAT_OPTIONS,
    REDIS_TLS,
    SECTIONS,
    kafka_options,
    log_format,
    redis_tls,
)
from trainer.cli.options import add_options, build, options_of
from trainer.cli.resolve import redact_url
from trainer.core.settings import ModelSettings
from trainer.daemon.settings import PROGRESS, TrainSettings
from trainer.errors import Stopped
from trainer.options import Option, positive

if TYPE_CHECKING:
    from trainer.daemon.group import Membership

HELP = "the trainer daemon"
DESCRIPTION = (
    "Consume events, train the model, checkpoint state with the offsets, commit offsets after "
    "each checkpoint. Runs until SIGTERM/SIGINT (finishes its batch, checkpoints, exits 0) or "
    "--stop-when-idle."
)
log = logging.getLogger("recstream")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(
        parser,
        [
            *(o for _, o in options_of(TrainSettings)),
            *LOG_FORMAT_OPTIONS,
            *KAFKA_SECURITY_OPTIONS,
            *REDIS_TLS,
            *(o for _, o in options_of(ModelSettings)),
            WORKERS,
        ],
        SECTIONS,
    )


def settings(args: argparse.Namespace) -> TrainSettings:
    return build(
        TrainSettings,
        args,
        model=build(ModelSettings, args),
        kafka_options=kafka_options(args),
        redis_tls=redis_tls(args),
        log_format=log_format(args),
        progress=PROGRESS.setting(args.no_progress) and sys.stderr.isatty(),
    )


def check_log(s: TrainSettings) -> None:
    """A file source's mapping against its header, now: a bad one is one line and exit 2
    before the trainer takes its lock or loads a checkpoint."""
    from stream import parse_uri

    uri = parse_uri(s.source)
    if uri.scheme == "file":
        reader, _ = s.log_format.open(uri.path)
        reader.close()


WORKERS = Option(
    "--workers",
    1,
    "train as a group of N processes on this host (torchrun --standalone; each reads "
    "partitions p mod N; see README 'Running on several processes and hosts')",
    positive,
    group="operations",
)


def run(args: argparse.Namespace) -> int:
    s = settings(args)
    check_log(s)  # before loading torch: a bad mapping is refused in well under a second
    if args.workers > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.workers)
    from trainer.daemon.group import join

    group = join()
    if group is not None:
        return _group(s, group)
    from trainer.daemon.loop import Trainer

    log.info(
        "train: source %s, group %s, checkpoints in %s every %.0f s, redis %s, namespace %s",
        s.source,
        s.group,
        s.checkpoint_dir,
        s.checkpoint_every_s,
        redact_url(s.redis),
        s.namespace,
    )
    trainer = Trainer(s)
    trainer.install_signal_handlers()
    try:
        learner = trainer.run()
    except Stopped as e:  # SIGTERM before the source opened: nothing to checkpoint
        log.info("%s", e)
        return 0
    summary: dict[str, object] = {
        "events_applied": learner.events_applied if learner else None,
        "events_rejected": trainer.rejected,
        "events_per_s_this_run": round(trainer.events_this_run / max(trainer.elapsed_s, 1e-9), 1),
        "checkpoint": trainer.checkpoint_id,
        "shutdown_s": None if trainer.shutdown_s is None else round(trainer.shutdown_s, 3),
    }
    if learner is None:
        summary["standby"] = True
    print(json.dumps(summary))
    return 0


def _torchrun(workers: int) -> int:
    """This command as `workers` processes of one group on this host, through torchrun."""
    from trainer.daemon.launch import run_group

    argv = sys.argv[1:]
    if "--workers" in argv:  # the group's members run without it
        k = argv.index("--workers")
        del argv[k : k + 2]
    argv = [a for a in argv if not a.startswith("--workers=")]
    return run_group(workers, argv)


def _group(s: TrainSettings, group: Membership) -> int:
    from trainer.daemon.grouploop import GroupTrainer

    trainer = GroupTrainer(s, group)
    trainer.install_signal_handlers()
    learner = trainer.run()
    if group.rank == 0:
        summary = {
            "events_applied": learner.events_applied,
            "checkpoint": trainer.checkpoint_id,
            "workers": group.world,
            "events_per_s_this_run": round(trainer.events_this_run / trainer.elapsed_s, 1),
            # rank 0's seconds in the group's collectives up to its last event (waits for
            # slower ranks included): a share of the run's seconds above
            "collective_s": round(trainer.collective_s, 3),
            "shutdown_s": None if trainer.shutdown_s is None else round(trainer.shutdown_s, 3),
        }
        print(json.dumps(summary))
    return 0
