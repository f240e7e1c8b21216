"""`recstream`: one console script; each subcommand parses flags, builds settings and runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from trainer.cli.flags import (
    add_kafka_security,
    add_metrics,
    add_redis_tls,
    kafka_options,
    redis_options,
    seconds,
)
from trainer.cli.resolve import redact_url, require, resolve
from trainer.core.features import FieldSpec, parse_fields
from trainer.core.negatives import DEFAULT_NEGATIVES, parse_negatives
from trainer.core.settings import ModelSettings, parse_duration_ms
from trainer.errors import ConfigError

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
log = logging.getLogger("recstream")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--namespace",
        default="recstream",
        help="prefix of every Redis key of this deployment (default: %(default)s)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="TOML",
        help="settings file; flags win over RECSTREAM_* variables, which win over the file",
    )


def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes a whole number, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {v}")
        return v

    return parse


def _iso_ms(text: str) -> int:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--from-time takes an ISO 8601 time such as 2026-11-01T00:00:00Z, got {text!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recstream",
        description="Streaming trainer for a two-tower softmax recommender: "
        "events from Kafka (or a log) in, item and user vectors in Redis out.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a synthetic stream, no setup needed",
        description="Start a local broker (and Redis if none answers), generate a "
        "synthetic stream, replay it into Kafka, train, publish to Redis and print "
        "recommendations read back from Redis. Cleans up what it started.",
    )
    p.add_argument("--events", type=_positive_int("--events"), default=100_000)
    p.add_argument("--users", type=_positive_int("--users"), default=2000)
    p.add_argument("--items", type=_positive_int("--items"), default=3000)
    p.add_argument(
        "--redis",
        default=None,
        help="Redis URL (default: 127.0.0.1:6379 if it "
        "answers, else a redis-server started for the demo)",
    )
    p.add_argument("--seed", type=int, default=7)
    _common(p)
    p.set_defaults(namespace="recstream-demo")  # the demo clears its namespace: never the real one

    p = sub.add_parser(
        "generate",
        help="write a synthetic event stream (JSONL)",
        description="A synthetic stream: Zipf-like item popularity and user taste "
        "clusters, timestamps increasing and ending now.",
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="output file (.gz compresses)")
    p.add_argument("--users", type=_positive_int("--users"), default=10_000)
    p.add_argument("--items", type=_positive_int("--items"), default=5_000)
    p.add_argument("--events", type=_positive_int("--events"), default=100_000)
    p.add_argument("--clusters", type=_positive_int("--clusters"), default=8)
    p.add_argument(
        "--affinity",
        type=float,
        default=0.8,
        help="share of events inside the user's cluster (1.0 = disjoint groups)",
    )
    p.add_argument("--seed", type=int, default=0)
    _common(p)

    p = sub.add_parser(
        "replay",
        help="produce an event log into a Kafka topic",
        description="Produce a JSONL (or .gz) event log into a topic, keyed by "
        "user, each line as it is (the trainer rejects bad lines into <topic>.dlq).",
    )
    p.add_argument("path", type=Path)
    p.add_argument("--to", required=True, help="kafka://HOST:PORT/TOPIC")
    p.add_argument(
        "--rate", type=float, default=0.0, help="events/s limit; 0 = as fast as possible"
    )
    p.add_argument(
        "--partitions",
        type=_positive_int("--partitions"),
        default=4,
        help="partitions of the topic if it has to be created (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true")
    add_kafka_security(p)
    _common(p)

    p = sub.add_parser(
        "train",
        help="the trainer daemon",
        description="Consume events, train the model, checkpoint state with the "
        "offsets, commit offsets after each checkpoint. Runs until SIGTERM/SIGINT "
        "(finishes its batch, checkpoints, exits 0) or --stop-when-idle.",
    )
    p.add_argument("--source", default=None, help="kafka://HOST:PORT/TOPIC or file://PATH")
    p.add_argument(
        "--group", default="recstream", help="Kafka consumer group (default: %(default)s)"
    )
    p.add_argument("--checkpoint-dir", default=None, type=Path)
    require(p, "source", "checkpoint_dir")
    p.add_argument(
        "--redis",
        default=None,
        help="when given, a writer process publishes every checkpoint to this Redis",
    )
    p.add_argument(
        "--stop-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit cleanly once no event arrived for this long",
    )
    p.add_argument(
        "--from-time",
        type=_iso_ms,
        default=None,
        metavar="ISO8601",
        help="start a fresh model at the topic's offsets at this time (UTC if no zone)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=seconds("--checkpoint-every"),
        default=60.0,
        metavar="SECONDS",
        help="checkpoint (then commit offsets) this often (default: %(default)s)",
    )
    p.add_argument(
        "--checkpoint-every-events",
        type=_positive_int("--checkpoint-every-events"),
        default=None,
        metavar="N",
        help="also checkpoint after every N events",
    )
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=1024)
    p.add_argument(
        "--threads",
        type=_positive_int("--threads"),
        default=1,
        help="torch intra-op threads; 1 is often fastest on 2 cores (default: 1)",
    )
    p.add_argument(
        "--partitions",
        type=_positive_int("--partitions"),
        default=4,
        help="partitions of the topic if the trainer has to create it",
    )
    p.add_argument(
        "--dead-letter",
        type=Path,
        default=None,
        help="dead-letter file for file sources (default: CHECKPOINT_DIR/dead-letter.jsonl)",
    )
    p.add_argument("--session-timeout-ms", type=_positive_int("--session-timeout-ms"), default=6000)
    p.add_argument(
        "--heartbeat-interval-ms", type=_positive_int("--heartbeat-interval-ms"), default=1000
    )
    p.add_argument(
        "--max-poll-interval-ms",
        type=_positive_int("--max-poll-interval-ms"),
        default=300_000,
        help="longest time between polls (a batch plus a checkpoint) before the group "
        "drops this consumer; over half of it logs a warning (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true")
    o = p.add_argument_group("operations")
    add_metrics(o)
    o.add_argument(
        "--stall-after",
        type=seconds("--stall-after"),
        default=120.0,
        metavar="SECONDS",
        help="alarm (and fail /healthz) when training stands still this long while events "
        "wait, or the loop does not turn (default: %(default)s)",
    )
    o.add_argument(
        "--shutdown-grace",
        type=seconds("--shutdown-grace"),
        default=30.0,
        metavar="SECONDS",
        help="time the supervisor allows after SIGTERM; bounds the wait for the writer "
        "child (default: %(default)s)",
    )
    o.add_argument("--test-mode", action="store_true", help=argparse.SUPPRESS)
    add_kafka_security(p)
    add_redis_tls(p)
    m = p.add_argument_group("model")
    m.add_argument("--dim", type=_positive_int("--dim"), default=64)
    m.add_argument(
        "--layers",
        default="",
        help="hidden sizes of the query tower, e.g. 256,128 (default: none, a linear tower)",
    )
    m.add_argument("--history", type=int, default=20, help="recent items per user in the query")
    m.add_argument("--lr", type=float, default=0.1, help="Adagrad step of embedding rows")
    m.add_argument("--dense-lr", type=float, default=0.01, help="Adagrad step of tower weights")
    m.add_argument(
        "--negatives",
        default=DEFAULT_NEGATIVES,
        help="name[:count],...: popularity:N, uniform:N, in-batch, or none (default: %(default)s)",
    )
    m.add_argument("--alpha", type=float, default=0.75, help="popularity sampling ∝ count^alpha")
    m.add_argument("--epsilon", type=float, default=0.05, help="uniform share of popularity draws")
    m.add_argument("--half-life", default="7d", help="popularity decay in event time; 0 = none")
    m.add_argument(
        "--hard-pool",
        type=int,
        default=256,
        help="hard negatives: candidates drawn by popularity before scoring",
    )
    m.add_argument(
        "--hard-temperature",
        type=float,
        default=1.0,
        help="hard negatives are drawn ∝ exp(score / temperature)",
    )
    m.add_argument(
        "--gravity",
        type=float,
        default=0.0,
        help="λ of the gravity penalty on the mean squared score (0 = off)",
    )
    m.add_argument(
        "--popularity-prior",
        type=float,
        default=1.0,
        help="weight w of a logit offset w·log(1 + decayed count), so the model falls back "
        "on what is trending where personal signal is weak (default: 1; 0 = off)",
    )
    m.add_argument(
        "--no-logq",
        action="store_true",
        help="do not subtract log Q from sampled logits (biased; for comparisons only)",
    )
    m.add_argument(
        "--eval-budget",
        type=float,
        default=0.1,
        help="progressive evaluation may take at most this share of a step (default: 0.1)",
    )
    m.add_argument(
        "--eval-sample",
        type=int,
        default=64,
        help="queries per batch scored before learning, for progressive recall",
    )
    v = p.add_argument_group("vocabulary and features")
    v.add_argument(
        "--min-count",
        type=int,
        default=2,
        help="sightings before a user or item gets a row of its own; until then it shares one "
        "of --buckets hashed rows, so a flood of one-off ids cannot grow the tables (default: 2)",
    )
    v.add_argument("--buckets", type=int, default=16, help="shared rows per id table (default: 16)")
    v.add_argument(
        "--max-users", type=int, default=2_000_000, help="row cap of the user table (0 = none)"
    )
    v.add_argument(
        "--max-items", type=int, default=1_000_000, help="row cap of the item table (0 = none)"
    )
    v.add_argument(
        "--evict-after",
        default="30d",
        help="ids unseen for this long in event time lose their rows (0 = never; default: 30d)",
    )
    v.add_argument(
        "--context-fields",
        default="",
        help="context fields the query tower reads, e.g. device,hour,price:num "
        "(categorical unless :num; unknown fields are ignored)",
    )
    v.add_argument(
        "--item-features",
        default="",
        help="context fields that describe the item, e.g. item_category: a new item starts "
        "near items that share them",
    )
    v.add_argument(
        "--feature-buckets", type=int, default=1000, help="hashed rows per categorical feature"
    )
    m.add_argument("--seed", type=int, default=0)
    _common(p)

    p = sub.add_parser(
        "publish",
        help="the writer: publish checkpoints to Redis",
        description="Publish the newest checkpoint's item and user vectors to "
        "Redis as a new version and switch readers to it atomically.",
    )
    p.add_argument("--checkpoint-dir", default=None, type=Path)
    require(p, "checkpoint_dir")
    p.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (default: %(default)s)")
    p.add_argument("--watch", action="store_true", help="keep running; publish each new checkpoint")
    p.add_argument(
        "--interval",
        type=seconds("--interval"),
        default=1.0,
        help="--watch: seconds between looks (default: %(default)s)",
    )
    p.add_argument(
        "--keep",
        type=_positive_int("--keep"),
        default=2,
        help="versions kept in Redis besides the current one's grace (default: %(default)s)",
    )
    p.add_argument(
        "--grace",
        type=seconds("--grace", allow_zero=True),
        default=60.0,
        metavar="SECONDS",
        help="a replaced version is deleted no sooner than this (default: %(default)s)",
    )
    add_metrics(p)
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--test-mode", action="store_true", help=argparse.SUPPRESS)
    add_redis_tls(p)
    _common(p)

    p = sub.add_parser(
        "recommend",
        help="top-k items for a user, read from Redis (JSON)",
        description="Top-k for a user from its published vector; for a user without one (new, "
        "or not yet admitted), from --recent items and --context through the published query "
        "tower. Without --user: the cold-start answer alone.",
    )
    p.add_argument("--user", default=None, help="user id (an integer id is its decimal string)")
    p.add_argument("--recent", default="", help="comma-separated recent item ids, oldest first")
    p.add_argument("--context", default="", help='context as JSON, e.g. {"device": "mobile"}')
    p.add_argument("-k", type=_positive_int("-k"), default=10)
    p.add_argument("--exclude", default="", help="comma-separated item ids to leave out")
    p.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (default: %(default)s)")
    add_redis_tls(p)
    _common(p)

    p = sub.add_parser("status", help="the trainer's state, from its newest checkpoint (JSON)")
    p.add_argument("--checkpoint-dir", default=None, type=Path)
    require(p, "checkpoint_dir")
    _common(p)

    p = sub.add_parser(
        "acl",
        help="print least-privilege Redis ACL commands for the writer and for readers",
        description="Print ACL SETUSER commands: the writer may write only the namespace's "
        "keys, readers may only read them. Replace the password placeholders, then run them "
        "with redis-cli as an administrator (or put them, without 'ACL SETUSER', in an ACL file).",
    )
    p.add_argument("--writer-user", default="recstream-writer")
    p.add_argument("--reader-user", default="recstream-reader")
    _common(p)

    from bench.cli import add_arguments as bench_arguments

    p = sub.add_parser(
        "bench",
        help="benchmarks and the MF-vs-softmax comparison: report.md + PNG plots",
        description="Generate synthetic streams (fixed seeds), run the softmax model, WALS, "
        "river MF and popularity baselines on them, measure training, serving and pipeline "
        "throughput against real services, and write DIR/report.md with plots.",
    )
    bench_arguments(p)
    _common(p)
    return parser


def model_settings(a: argparse.Namespace) -> ModelSettings:
    try:
        layers = tuple(int(x) for x in a.layers.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--layers: cannot read {a.layers!r}; write sizes like 256,128") from None
    try:
        negatives = parse_negatives(a.negatives)
    except ValueError as e:
        raise ConfigError(f"--negatives: {e}") from None
    return ModelSettings(
        dim=a.dim,
        layers=layers,
        history=a.history,
        lr=a.lr,
        dense_lr=a.dense_lr,
        negatives=negatives,
        alpha=a.alpha,
        epsilon=a.epsilon,
        half_life_ms=parse_duration_ms(a.half_life, "--half-life"),
        hard_pool=a.hard_pool,
        hard_temperature=a.hard_temperature,
        gravity=a.gravity,
        popularity_prior=a.popularity_prior,
        eval_sample=a.eval_sample,
        eval_budget=a.eval_budget,
        logq=not a.no_logq,
        min_count=a.min_count,
        buckets=a.buckets,
        max_users=a.max_users or None,
        max_items=a.max_items or None,
        evict_after_ms=parse_duration_ms(a.evict_after, "--evict-after") or None,
        context_fields=fields(a.context_fields, "--context-fields"),
        item_features=fields(a.item_features, "--item-features"),
        feature_buckets=a.feature_buckets,
        seed=a.seed,
    )


def fields(text: str, flag: str) -> tuple[FieldSpec, ...]:
    try:
        return parse_fields(text)
    except ValueError as e:
        raise ConfigError(f"{flag}: {e}") from None


def cmd_train(a: argparse.Namespace) -> int:
    from trainer.daemon.loop import Trainer
    from trainer.daemon.settings import TrainSettings

    settings = TrainSettings(
        source=a.source,
        checkpoint_dir=a.checkpoint_dir,
        group=a.group,
        redis=a.redis,
        namespace=a.namespace,
        batch_size=a.batch_size,
        stop_when_idle_s=a.stop_when_idle,
        checkpoint_every_s=a.checkpoint_every,
        checkpoint_every_events=a.checkpoint_every_events,
        from_time_ms=a.from_time,
        threads=a.threads,
        partitions=a.partitions,
        dead_letter=a.dead_letter,
        session_timeout_ms=a.session_timeout_ms,
        heartbeat_interval_ms=a.heartbeat_interval_ms,
        max_poll_interval_ms=a.max_poll_interval_ms,
        kafka_options=kafka_options(a),
        redis_tls={
            k: v
            for k, v in (("ca_cert", a.redis_ca_cert), ("cert", a.redis_cert), ("key", a.redis_key))
            if v
        },
        metrics_port=a.metrics_port,
        metrics_host=a.metrics_host,
        stall_after_s=a.stall_after,
        shutdown_grace_s=a.shutdown_grace,
        test_mode=a.test_mode,
        progress=not a.no_progress and sys.stderr.isatty(),
        model=model_settings(a),
    )
    log.info(
        "train: source %s, group %s, checkpoints in %s every %.0f s, redis %s, namespace %s",
        settings.source,
        settings.group,
        settings.checkpoint_dir,
        settings.checkpoint_every_s,
        redact_url(settings.redis),
        settings.namespace,
    )
    trainer = Trainer(settings)
    trainer.install_signal_handlers()
    learner = trainer.run()
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


def cmd_publish(a: argparse.Namespace) -> int:
    from store import Writer
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
        **redis_options(a),
    )
    if a.watch:
        from trainer.daemon.metrics import MetricsServer, WriterMetrics
        from trainer.daemon.publish import WatchStatus

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


def cmd_recommend(a: argparse.Namespace) -> int:
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
    if a.user is not None:
        try:
            print(json.dumps(reader.recommend(a.user, k=a.k, exclude=exclude)))
            return 0
        except UnknownUser:
            if not recent and context is None:
                raise
    print(json.dumps(reader.recommend_for(recent, context, k=a.k, exclude=exclude)))
    return 0


def cmd_acl(a: argparse.Namespace) -> int:
    from store.acl import reader_rules, writer_rules

    print(f"ACL SETUSER {a.writer_user} on >WRITER_PASSWORD {writer_rules(a.namespace)}")
    print(f"ACL SETUSER {a.reader_user} on >READER_PASSWORD {reader_rules(a.namespace)}")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    from trainer.daemon.status import status

    print(json.dumps(status(a.checkpoint_dir, a.namespace), indent=2))
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from stream.synthetic import World, generate, write_jsonl

    world = World(
        users=a.users, items=a.items, clusters=a.clusters, affinity=a.affinity, seed=a.seed
    )
    n = write_jsonl(a.output, generate(world, a.events))
    print(json.dumps({"events": n, "path": str(a.output)}))
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from stream.replay import replay

    n = replay(
        a.path,
        a.to,
        rate=a.rate,
        partitions=a.partitions,
        progress=not a.no_progress,
        client_options=kafka_options(a),
    )
    print(json.dumps({"produced": n, "to": a.to}))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from trainer.cli.demo import run_demo

    return run_demo(
        events=a.events,
        users=a.users,
        items=a.items,
        redis_url=a.redis,
        namespace=a.namespace,
        seed=a.seed,
    )


def cmd_bench(a: argparse.Namespace) -> int:
    from bench.cli import run

    return run(a)


COMMANDS = {
    "acl": cmd_acl,
    "bench": cmd_bench,
    "demo": cmd_demo,
    "generate": cmd_generate,
    "replay": cmd_replay,
    "train": cmd_train,
    "publish": cmd_publish,
    "recommend": cmd_recommend,
    "status": cmd_status,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        a = resolve(parser, argv)
    except ConfigError as e:
        print(f"recstream: {e}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(a.log_level)
    if a.log_level != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    from store import StoreError
    from stream import StreamError
    from trainer.errors import TrainerError

    try:
        return COMMANDS[a.command](a)
    except (TrainerError, StreamError, StoreError) as e:
        print(f"recstream {a.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
