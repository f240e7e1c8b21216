"""The total lag gauge: a value from the start, over owned partitions, unknown (NaN and
recstream_lag_known 0) from a kick-out to the rejoin, never a stale 0; fed by the watchdog's
own reading of the end offsets."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trainer.daemon.metrics import TotalLag, TrainerMetrics
from trainer.daemon.watchdog import Progress, Watchdog


def scrape(metrics: TrainerMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("recstream_topic_lag_events", "recstream_lag_known")
    }


def test_total_lag_is_known_from_the_start_and_unknown_while_kicked_out():
    metrics = TrainerMetrics()
    first = scrape(metrics)
    assert math.isnan(first["recstream_topic_lag_events"]) and first["recstream_lag_known"] == 0
    lag = TotalLag(metrics)
    ends = {"t:0": 100, "t:1": 50, "t:2": 7}
    lag.update(ends, ready=False, owned=None, positions={"t:0": 40})  # not joined yet
    assert scrape(metrics) == {"recstream_topic_lag_events": 117.0, "recstream_lag_known": 1.0}
    lag.update(ends, ready=True, owned={"t:0", "t:1"}, positions={"t:0": 90, "t:1": 50})
    assert scrape(metrics)["recstream_topic_lag_events"] == 10
    lag.update({"t:0": 100, "t:1": 80, "t:2": 7}, ready=False, owned=None, positions={})
    gone = scrape(metrics)  # kicked out: the positions of a member that owns nothing
    assert math.isnan(gone["recstream_topic_lag_events"]) and gone["recstream_lag_known"] == 0
    lag.update(ends, ready=True, owned={"t:2"}, positions={"t:2": 7})  # rejoined with t:2
    assert scrape(metrics) == {"recstream_topic_lag_events": 0.0, "recstream_lag_known": 1.0}


def test_the_watchdog_hands_every_end_offset_reading_on_at_once():
    readings = []
    dog = Watchdog(Progress(), 60, end_offsets=lambda: {"t:0": 5}, interval_s=30,
                   on_ends=readings.append)  # fmt: skip
    dog.start()
    try:
        for _ in range(100):
            if readings:
                break
            dog._stop.wait(0.02)
    finally:
        dog.close()
    assert readings == [{"t:0": 5}]  # the first look comes at start, not after 30 s
