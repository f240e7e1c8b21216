"""`recstream demo`: the whole pipeline on an embedded synthetic stream, with real services.

Starts a local Kafka-compatible broker (Tansu) and, when nothing answers at the default URL, a
redis-server; generates a stream with hidden taste clusters (plus a few malformed events),
replays it into a topic, trains from Kafka with a separate writer process publishing to Redis,
then reads recommendations back through the reader — what a downstream service would do.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

from trainer.cli.flags import COMMON, DEFAULT_REDIS
from trainer.cli.options import add_options
from trainer.options import Option, positive, whole

HELP = "run the whole pipeline on a synthetic stream, no setup needed"
DESCRIPTION = (
    "Start a local broker (and Redis if none answers), generate a synthetic stream, replay it "
    "into Kafka, train, publish to Redis and print recommendations read back from Redis. "
    "Cleans up what it started. Takes flags only (no RECSTREAM_* variables, no file)."
)
NAMESPACE = "recstream-demo"  # the demo clears its namespace: never a deployment's
OPTIONS = (
    Option("--events", 100_000, "events of the synthetic stream", positive),
    Option("--users", 2000, "users", positive),
    Option("--items", 3000, "items", positive),
    Option(
        "--redis",
        None,
        f"Redis URL (default: {DEFAULT_REDIS} if it answers, else a redis-server started for "
        "the demo)",
        metavar="URL",
    ),
    Option("--seed", 7, "seed of the stream", whole),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, (*OPTIONS, *COMMON))
    parser.set_defaults(namespace=NAMESPACE)


def run(a: argparse.Namespace) -> int:
    return run_demo(
        events=a.events,
        users=a.users,
        items=a.items,
        redis_url=a.redis,
        namespace=a.namespace,
        seed=a.seed,
    )


BAD_LINES = [
    b"this is not json",
    b'{"user": 1, "item": "i1", "ts": 1, "weight": -1}',
    b'{"user": 1}',
    b'{"user": "' + b"x" * 300 + b'", "item": "i1", "ts": 1}',
]


def run_demo(
    events: int, users: int, items: int, redis_url: str | None, namespace: str, seed: int
) -> int:
    from store import Reader, RedisServer, Writer, ping
    from stream.broker import LocalBroker
    from stream.replay import replay
    from stream.synthetic import World, generate, write_jsonl
    from trainer.daemon.loop import Trainer
    from trainer.daemon.settings import TrainSettings
    from trainer.daemon.status import status

    with ExitStack() as stack:
        print("[1/5] starting a local Kafka-compatible broker (Tansu) ...", flush=True)
        broker = stack.enter_context(LocalBroker())
        if redis_url is None:
            if ping(DEFAULT_REDIS):
                redis_url = DEFAULT_REDIS
            else:
                print("      no Redis at 127.0.0.1:6379: starting redis-server for the demo")
                redis_url = stack.enter_context(RedisServer()).url
        Writer.from_url(redis_url, namespace=namespace).drop()  # the demo owns its namespace
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recstream-demo-")))

        print(
            f"[2/5] generating {events:,} events ({users:,} users, {items:,} items, 8 taste "
            f"clusters) + {len(BAD_LINES)} malformed ones",
            flush=True,
        )
        world = World(users=users, items=items, clusters=8, affinity=0.85, seed=seed)
        log_path = work / "events.jsonl"
        write_jsonl(log_path, generate(world, events))
        with open(log_path, "ab") as f:
            f.write(b"\n".join(BAD_LINES) + b"\n")

        topic = f"recstream-demo-{uuid.uuid4().hex[:8]}"
        uri = f"kafka://{broker.bootstrap}/{topic}"
        print(f"[3/5] replaying the log into {uri}", flush=True)
        replay(log_path, uri, partitions=4, progress=True)

        print(
            f"[4/5] training from Kafka; a writer process publishes to Redis ({namespace})",
            flush=True,
        )
        ckpt_dir = work / "checkpoints"
        trainer = Trainer(
            TrainSettings(
                source=uri,
                checkpoint_dir=ckpt_dir,
                group="recstream-demo",
                redis=redis_url,
                namespace=namespace,
                stop_when_idle_s=3.0,
                checkpoint_every_s=15.0,
                progress=True,
            )
        )
        trainer.install_signal_handlers()
        trainer.run()
        rate = trainer.events_this_run / max(trainer.elapsed_s, 1e-9)

        print("[5/5] top-10 recommendations read back from Redis:", flush=True)
        reader = Reader.from_url(redis_url, namespace=namespace)
        shares = []
        for user in (0, 1, 42):
            cluster = world.user_cluster(user)
            recs = reader.recommend(user, k=10)
            own = [world.item_cluster(str(r["item"])) == cluster for r in recs]
            shares.append(sum(own) / max(len(recs), 1))
            shown = ", ".join(
                f"{r['item']}{'*' if o else ''}" for r, o in zip(recs, own, strict=True)
            )
            print(f"  user {user} (taste cluster {cluster}): {shown}")
        print(
            f"  (* = from the user's own cluster; {100 * sum(shares) / len(shares):.0f}% of these "
            f"vs {100 / 8:.0f}% by chance)"
        )
        st = status(ckpt_dir, namespace)
        print(
            json.dumps(
                {
                    k: st[k]
                    for k in (
                        "events_applied",
                        "events_rejected",
                        "published_version",
                        "checkpoint_time",
                    )
                },
                indent=2,
            )
        )
        print(f"trained {trainer.events_this_run:,} events at {rate:,.0f} events/s, Kafka included")
        print(
            f"\nThe vectors stay in Redis under namespace {namespace!r}; try:\n"
            f"  recstream recommend --redis {redis_url} --namespace {namespace} --user 42 -k 5"
        )
    return 0
