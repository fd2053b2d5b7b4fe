"""Write the report: a markdown table of every figure and PNG plots, in one folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.results import TABLE_HEADER, Result, table_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def ratio_plot(results: Sequence[Result], path: Path) -> Path | None:
    """Horizontal bars of each ratio, a marker at its target, green for pass and red for miss."""
    rows = [r for r in results if r.ratio is not None]
    if not rows:
        return None
    figure = _figure(11, 0.45 * len(rows) + 1.5)
    axes = figure.subplots()
    colors = {"pass": "tab:green", "miss": "tab:red", "report": "tab:grey"}
    positions = np.arange(len(rows))[::-1]
    axes.barh(positions, [r.ratio for r in rows], color=[colors[r.verdict] for r in rows])
    for position, result in zip(positions, rows, strict=True):
        if result.target is not None:
            axes.plot([result.target] * 2, [position - 0.4, position + 0.4], color="black")
    axes.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    labels = [f"{r.stage}: {r.name}" + (f" ({r.size})" if r.size != "-" else "") for r in rows]
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set(xscale="log", xlabel="ratio to the baseline (log; black tick = target)")
    figure.suptitle("Each figure against its lower bound, same run, same data")
    figure.savefig(path, dpi=110)
    return path


def distribution_plot(results: Sequence[Result], path: Path, title: str) -> Path | None:
    """Empirical CDFs of the sampled latencies of each figure that kept its samples."""
    sampled = [r for r in results if r.samples]
    if not sampled:
        return None
    figure = _figure(6 * len(sampled), 4)
    for axes, result in zip(np.atleast_1d(figure.subplots(1, len(sampled))), sampled, strict=True):
        for label, values in result.samples.items():
            ordered = np.sort(values)
            axes.step(ordered, np.arange(1, ordered.size + 1) / ordered.size, label=label)
        axes.set(title=f"{result.name}", xlabel=result.unit, ylabel="share of requests")
        axes.legend(loc="lower right")
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    return path


def write_report(
    folder: Path,
    results: Sequence[Result],
    machine: dict[str, str],
    mode: str,
    notes: Sequence[str],
    seconds: float,
) -> Path:
    """report.md and its plots in `folder`; returns the report's path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = [
        ratio_plot(results, folder / "ratios.png"),
        distribution_plot(
            [r for r in results if r.stage == "online scoring"],
            folder / "serving-latency.png",
            "Online scoring latency, sequential requests",
        ),
        distribution_plot(
            [r for r in results if r.stage == "event to retraining"],
            folder / "event-latency.png",
            "Event to retraining run",
        ),
    ]
    missed = [r for r in results if r.verdict == "miss"]
    lines = [
        f"# Benchmarks ({mode})",
        "",
        f"{len(results)} figures, {len(missed)} missing their target; the suite took "
        f"{seconds / 60:.1f} min. Each figure is a ratio to a baseline measured in the same run "
        "on the same seeded data from `mlops_flows/examples/churn/simulate.py`; absolute times "
        "on a shared machine are noise, the ratios are the figures.",
        "",
        TABLE_HEADER,
        *(table_row(r) for r in results),
        "",
        "## Notes per figure",
        "",
        *(f"- **{r.stage}, {r.name}** ({r.size}): {r.note}" for r in results if r.note),
        "",
    ]
    if notes:
        lines += ["## Findings", "", *notes, ""]
    lines += ["## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in machine.items()]
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
