"""The rebalance bridge: kafka-python's group callbacks, delivered to a `KafkaSource`.

kafka-python (>= 3.0) calls a rebalance listener on its IO thread, the one that also sends the
group's heartbeats, where blocking consumer calls (``committed``, ``commit``,
``beginning_offsets``) are refused. An async listener may await instead, and the IO loop keeps
heartbeating meanwhile; the bridge runs the source's blocking work on a helper thread and awaits
its end. The thread that called ``poll`` is blocked until the rebalance ends, so that work has
the source to itself.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

try:
    from kafka import AsyncConsumerRebalanceListener
except ImportError as e:  # kafka-python 2.x runs listeners differently
    raise ImportError(
        "stream.kafka needs kafka-python >= 3.0: pip install 'kafka-python>=3'"
    ) from e

Work = Callable[[], None]


class Rebalanced(Protocol):
    """What the bridge calls on its source (`KafkaSource`), on kafka-python's IO thread.

    The work the first two return may block; the bridge runs it on a helper thread and waits.
    For partitions taken away the order is `_on_revoked`, its hand-over, then `_on_released`.
    """

    def _on_assigned(self, assigned: set[TopicPartition]) -> Work:
        """The work of starting to read `assigned` (seeking each to its start offset)."""
        ...

    def _on_revoked(self, revoked: set[TopicPartition], lost: bool) -> Work | None:
        """Stop reading `revoked` (`lost`: the group has moved on without this member);
        return the hand-over of their pending records, or None if there is nothing to call."""
        ...

    def _on_released(self, released: set[TopicPartition]) -> None:
        """The partitions are gone: forget that this consumer owns them."""
        ...


class Rebalance(AsyncConsumerRebalanceListener):
    """The listener a `KafkaSource` subscribes with; see the module docstring."""

    def __init__(self, source: Rebalanced, consumer: KafkaConsumer) -> None:
        self._source = source
        self._consumer = consumer

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await _off_loop(self._consumer, self._source._on_assigned(assigned))

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoke(revoked, lost=False)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        await self._revoke(lost, lost=True)

    async def _revoke(self, revoked: set[TopicPartition], lost: bool) -> None:
        hand_over = self._source._on_revoked(revoked, lost)
        if hand_over is not None:
            await _off_loop(self._consumer, hand_over)
        self._source._on_released(revoked)


async def _off_loop(consumer: KafkaConsumer, work: Work) -> None:
    """Run blocking `work` on a helper thread while the consumer's IO loop keeps heartbeating;
    raise what `work` raised."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="recstream-rebalance", daemon=True).start()
    while not done.is_set():
        await _io_sleep(consumer, 0.002)
    if failure:
        raise failure[0]


def _io_sleep(consumer: KafkaConsumer, seconds: float) -> Awaitable[None]:
    """A pause of a listener on the consumer's own IO loop (not asyncio's), which keeps running.

    kafka-python offers no public awaitable for this: its `Future` is awaitable, but a helper
    thread that resolves it wakes the loop through the loop's non-thread-safe ``call_soon``.
    The loop's own ``sleep``, behind the private ``_net`` (checked on 3.0.12), is the one way
    to wait for a thread without blocking heartbeats.
    """
    return consumer._net.sleep(seconds)
