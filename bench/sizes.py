"""How big each benchmark runs: `quick()` (under 5 minutes here), `full()`, or `tiny()` (tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Sizes:
    # the comparison (trending stream with drift, new users and new items)
    events: int = 1_000_000
    users: int = 40_000
    items: int = 100_000
    batch: int = 1024
    eval_per_batch: int = 128
    als_retrain_every: int = 100_000
    # the realistic comparison: ratings streams judged like real data, over several seeds
    ratings_events: int = 1_000_000  # ratings per stream; ~60% are positives
    ratings_users: int = 60_000
    ratings_items: int = 20_000
    seeds: int = 3  # streams with seeds seed, seed + 1, ...
    # query features and folding streams
    side_events: int = 300_000
    side_users: int = 10_000
    side_items: int = 20_000
    # training scalability and the step grid (issue 3)
    catalogues: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    scaling_events: int = 200_000
    grid_catalogues: tuple[int, ...] = (100_000, 1_000_000)
    grid_batches: tuple[int, ...] = (256, 1024)
    grid_seconds: float = 4.0  # timed seconds per configuration and repeat
    grid_repeats: int = 3
    # serving and the pipeline
    serving_items: int = 1_000_000
    serving_queries: int = 300
    pipeline_events: int = 500_000
    publish_items: int = 1_000_000
    reader_items: tuple[int, ...] = (100_000, 1_000_000)
    ceiling_items: int = 1_000_000  # the learner vs the compute ceiling at popularity:1024
    checkpoint_rows: tuple[int, ...] = (100_000, 1_000_000)  # N users + N items
    seed: int = 0

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            events=60_000,
            users=3_000,
            items=8_000,
            eval_per_batch=96,
            als_retrain_every=15_000,
            ratings_events=300_000,
            ratings_users=18_000,
            ratings_items=6_000,
            seeds=2,
            side_events=40_000,
            side_users=1_500,
            side_items=4_000,
            scaling_events=40_000,
            grid_batches=(1024,),
            grid_seconds=1.5,
            grid_repeats=2,
            serving_queries=150,
            pipeline_events=200_000,
            checkpoint_rows=(100_000,),
        )

    @classmethod
    def tiny(cls) -> Sizes:
        """Seconds, not minutes: for the smoke test that the harness still runs."""
        return cls(
            events=6_000,
            users=300,
            items=800,
            batch=512,
            eval_per_batch=32,
            als_retrain_every=2_000,
            ratings_events=8_000,
            ratings_users=1_500,
            ratings_items=400,
            seeds=2,
            side_events=4_000,
            side_users=200,
            side_items=400,
            catalogues=(1_000, 5_000),
            scaling_events=4_000,
            grid_catalogues=(5_000,),
            grid_batches=(256,),
            grid_seconds=0.2,
            grid_repeats=1,
            serving_items=20_000,
            serving_queries=20,
            pipeline_events=3_000,
            publish_items=20_000,
            reader_items=(5_000,),
            ceiling_items=5_000,
            checkpoint_rows=(2_000, 4_000),
        )

    def with_seed(self, seed: int) -> Sizes:
        return replace(self, seed=seed)
