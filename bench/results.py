"""Rows of measured figures, and what a section hands to the report.

A row is one measured figure: (section, metric, subject) → value. A figure that cannot be
measured yet (a learner feature still missing, a service absent) is a row with value None and a
`note` saying why: the report prints the reason, never a made-up number.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Row:
    section: str
    metric: str
    subject: str
    value: float | None
    unit: str = ""
    note: str = ""
    headline: bool = False  # also shown in the summary table
    spread: float | None = None  # the value is a mean over runs (seeds): their sample sd

    @property
    def measured(self) -> bool:
        return self.value is not None

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        text = self._number(self.value)
        if self.spread is not None:
            text += " ± " + self._number(self.spread, like=self.value)
        return text

    def _number(self, v: float, like: float | None = None) -> str:
        size = abs(v if like is None else like)
        if self.unit == "%":
            return f"{100 * v:.1f}%"
        if self.unit in ("ratio", "×"):
            return f"{v:.2f}×"
        if size >= 1000:
            return f"{v:,.0f}"
        if size >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}"


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    series: dict[str, dict[str, Any]] = field(default_factory=dict)  # plot data by figure
    notes: dict[str, list[str]] = field(default_factory=dict)  # prose per section
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per section

    def add(
        self,
        section: str,
        metric: str,
        subject: str,
        value: float | None,
        unit: str = "",
        note: str = "",
        headline: bool = False,
        spread: float | None = None,
    ) -> None:
        if value is not None:
            value = float(value)
            if not math.isfinite(value):
                value, note = None, note or "not finite (nothing to measure)"
        if spread is not None and (value is None or not math.isfinite(spread)):
            spread = None
        self.rows.append(Row(section, metric, subject, value, unit, note, headline, spread))

    def pending(self, section: str, metric: str, subject: str, why: str) -> None:
        """A row that cannot be measured yet, with the reason."""
        self.rows.append(Row(section, metric, subject, None, note=why))

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)

    def section(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.section == name]

    def get(self, section: str, metric: str, subject: str) -> float | None:
        for r in self.rows:
            if (r.section, r.metric, r.subject) == (section, metric, subject):
                return r.value
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "rows": [asdict(r) for r in self.rows],
                "notes": self.notes,
                "seconds": self.seconds,
            },
            indent=1,
        )
