"""`python -m bench`: the benchmarks (see bench/cli.py)."""

from bench.cli import main

raise SystemExit(main())
