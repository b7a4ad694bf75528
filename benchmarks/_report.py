"""Rows of results, the printed table and the JSON document.

A row is a measured figure, the baseline it is divided by (measured in the
same process, interleaved with it), the ratio and, where the project sets one,
the target.  Targets are reported, never asserted: timings on a shared
machine are noise for a CI gate; people read the ratios.
"""

from __future__ import annotations

import json
import operator
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Row", "Target", "document", "format_table"]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    """A goal for a ratio: ``Target("<=", 1.15)``; op ``"band"`` means ``|x - 1| <= limit``."""

    op: str
    limit: float

    def met(self, value: float) -> bool:
        if self.op == "band":
            return abs(value - 1.0) <= self.limit
        return _COMPARE[self.op](value, self.limit)

    def __str__(self) -> str:
        if self.op == "band":
            return f"1 +/- {self.limit:.0%}"
        return f"{self.op} {self.limit:g}"


@dataclass
class Row:
    """One line of the table.  *value* and *baseline_value* are in *unit*."""

    key: str
    label: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: Target | None = None
    note: str = ""
    #: Whether *target* applies to *value* (memory in bytes) rather than to *ratio*.
    target_on_value: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        checked = self.value if self.target_on_value or self.ratio is None else self.ratio
        return self.target.met(checked)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data["met"] = self.met
        return data


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if value >= 1:
            return f"{value:.2f} s"
        if value >= 1e-3:
            return f"{value * 1e3:.1f} ms"
        return f"{value * 1e6:.2f} us"
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}"


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table: row, measured, baseline, ratio, target, status."""
    header = ("row", "measured", "baseline", "ratio", "target", "")
    lines = [header]
    for row in rows:
        status = {True: "ok", False: "MISSED", None: ""}[row.met]
        baseline = "-"
        if row.baseline is not None:
            baseline = f"{row.baseline} {_figure(row.baseline_value, row.unit)}"
        lines.append(
            (
                row.label,
                _figure(row.value, row.unit),
                baseline,
                "-" if row.ratio is None else f"{row.ratio:.3f}x",
                str(row.target) if row.target else "",
                status,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"  [{row.key}] {row.note}" for row in rows if row.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def document(rows: Sequence[Row], *, mode: str, extra: dict[str, Any]) -> str:
    """The JSON document (one object: machine, mode, rows, extra sections)."""
    data = {
        "mode": mode,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "rows": [row.as_json() for row in rows],
        **extra,
    }
    return json.dumps(data, indent=2, sort_keys=False)
