"""Benchmarks and the MF-vs-softmax comparison (`python -m bench`, `recstream bench`).

Not tests: they print figures. `bench.suite.run_suite` runs the sections and writes
`report.md` with PNG plots; `bench.sizes.Sizes` says how big (quick, full, tiny).
"""

from bench.results import Results, Row
from bench.sizes import Sizes

__all__ = ["Results", "Row", "Sizes"]
