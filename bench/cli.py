"""`python -m bench` and `recstream bench`: flags, then the suite."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from bench.sizes import Sizes

# The suite's sections, in order: bench.suite.SECTIONS runs bench.sections.<name>.section for
# each. Named here, not imported, so that building the parser does not import torch, river or
# implicit.
SECTIONS = (
    "quality",
    "realistic",
    "features",
    "folding",
    "scaling",
    "serving",
    "pipeline",
    "checkpoints",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--output", required=True, type=Path, help="folder for report.md and plots"
    )
    p.add_argument("--quick", action="store_true", help="small sizes: under 5 minutes here")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated sections to run (default all): {', '.join(SECTIONS)}",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every synthetic stream")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="streams of the realistic comparison (seeds seed, seed+1, ...; quick 2, full 3)",
    )
    p.add_argument("--events", type=int, default=None, help="events of the comparison stream")
    p.add_argument("--items", type=int, default=None, help="items of the comparison stream")
    p.add_argument("--users", type=int, default=None, help="users of the comparison stream")
    p.add_argument("--no-progress", action="store_true")


def run(a: argparse.Namespace) -> int:
    from bench.suite import run_suite

    only = tuple(s for s in a.only.split(",") if s)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(
            f"bench: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}",
            file=sys.stderr,
        )
        return 2
    sizes = Sizes.quick() if a.quick else Sizes.full()
    overrides = {k: getattr(a, k) for k in ("events", "items", "users", "seeds") if getattr(a, k)}
    sizes = dataclasses.replace(sizes, seed=a.seed, **overrides)
    results, path = run_suite(
        a.output,
        sizes,
        a.quick,
        only,
        progress=False if a.no_progress else None,
        command=" ".join(["recstream bench", *sys.argv[2:]])
        if sys.argv[1:2] == ["bench"]
        else " ".join(["python -m bench", *sys.argv[1:]]),
    )
    failed = [r for r in results.rows if r.metric == "section failed"]
    print(
        f"report: {path}"
        + (f" ({len(failed)} section(s) failed, see the report)" if failed else "")
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    import logging

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks and the MF-vs-softmax comparison: synthetic streams with fixed "
        "seeds, real services, one report (report.md + PNG plots) in the output folder.",
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))
