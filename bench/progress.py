"""One progress bar over the whole suite: a unit per section, fractions inside a section."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, sections: int, enabled: bool | None = None) -> None:
        on = sys.stderr.isatty() if enabled is None else enabled
        fmt = "{desc} |{bar}| {n:.1f}/{total} sections [{elapsed}<{remaining}]"
        self.bar = tqdm(total=sections, bar_format=fmt, disable=not on, dynamic_ncols=True)
        self.done = 0
        self.name = ""
        self.started = time.monotonic()

    def start(self, name: str) -> None:
        self.name = name
        self.step(name)

    def step(self, what: str) -> None:
        """Say what runs now (shown on the bar; logged when the bar is off)."""
        self.bar.set_description_str(f"bench: {what}", refresh=True)

    def fraction(self, f: float) -> None:
        """The current section is `f` (0..1) done."""
        self.bar.n = self.done + max(0.0, min(f, 1.0))
        self.bar.refresh()

    def finish(self) -> None:
        self.done += 1
        self.bar.n = self.done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
