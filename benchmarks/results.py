"""One measured figure as a value: measured, baseline, ratio, target, and how to print it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    """A figure of one stage at one size, against a baseline measured in the same run."""

    stage: str
    name: str
    size: str
    measured: float
    baseline: float | None = None
    baseline_name: str = ""
    unit: str = "s"
    target: float | None = None  # the ratio must be at or below this
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline <= 0 or not math.isfinite(self.measured):
            return None
        return self.measured / self.baseline

    @property
    def verdict(self) -> str:
        """`pass`, `miss`, or `report` when the figure has no target."""
        if self.target is None or self.ratio is None:
            return "report"
        return "pass" if self.ratio <= self.target else "miss"


def format_value(value: float | None, unit: str) -> str:
    """A number with its unit, precision by magnitude; a dash when absent."""
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


def format_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def format_target(target: float | None) -> str:
    return "-" if target is None else f"<= {target:g}x"


def table_row(result: Result) -> str:
    """One markdown table row: stage, figure, size, measured, baseline, ratio, target, verdict."""
    baseline = format_value(result.baseline, result.unit)
    if result.baseline_name:
        baseline = f"{baseline} ({result.baseline_name})"
    cells = [
        result.stage,
        result.name,
        result.size,
        format_value(result.measured, result.unit),
        baseline,
        format_ratio(result.ratio),
        format_target(result.target),
        {"pass": "pass", "miss": "**miss**", "report": "report"}[result.verdict],
    ]
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"


TABLE_HEADER = (
    "| stage | figure | size | measured | baseline | ratio | target | verdict |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)
