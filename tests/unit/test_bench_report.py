"""The benchmark report's pure logic: ratios, verdicts and table cells (nothing is timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.report import write_report
from benchmarks.results import Result, format_ratio, format_target, format_value, table_row


@pytest.mark.parametrize(
    ("measured", "baseline", "target", "ratio", "verdict"),
    [
        (3.0, 2.0, 1.5, 1.5, "pass"),
        (3.1, 2.0, 1.5, 1.55, "miss"),
        (3.0, 2.0, None, 1.5, "report"),
        (3.0, None, 1.5, None, "report"),
        (3.0, 0.0, 1.5, None, "report"),
    ],
)
def test_ratio_and_verdict(
    measured: float, baseline: float | None, target: float | None, ratio: float | None, verdict: str
) -> None:
    result = Result("stage", "figure", "1 row", measured, baseline, target=target)
    assert result.ratio == (pytest.approx(ratio) if ratio is not None else None)
    assert result.verdict == verdict


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.1234, "s", "0.123 s"),
        (12.345, "s", "12.35 s"),
        (5.04, "ms", "5.0 ms"),
        (1234.0, "ms", "1,234 ms"),
        (2048.4, "MB", "2,048 MB"),
        (None, "s", "-"),
        (float("nan"), "s", "-"),
    ],
)
def test_format_value(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_ratio_and_target_cells() -> None:
    assert format_ratio(2.456) == "2.46x"
    assert format_ratio(None) == "-"
    assert format_target(1.5) == "<= 1.5x"
    assert format_target(None) == "-"


def test_a_missed_target_is_bold_and_a_pipe_cannot_break_the_table() -> None:
    result = Result("build", "a | b", "1M", 6.0, 1.0, baseline_name="merge_asof", target=1.5)
    row = table_row(result)
    assert row.count("|") == 9
    assert "**miss**" in row
    assert "1.00 s (merge_asof)" in row


def test_report_lists_every_figure_and_the_machine(tmp_path: Path) -> None:
    results = [
        Result("build", "feast", "100k", 2.0, 1.0, target=1.5),
        Result("event to retraining", "p50", "3 events", 7.0, samples={"emit": [6.0, 7.0, 8.0]}),
    ]
    path = write_report(tmp_path, results, {"cores": "2"}, "small", ["- scaled down"], 60.0)
    text = path.read_text()
    assert "| build | feast | 100k | 2.00 s | 1.00 s | 2.00x | <= 1.5x | **miss** |" in text
    assert "| cores | 2 |" in text
    assert "- scaled down" in text
    assert "![ratios](ratios.png)" in text
    assert (tmp_path / "ratios.png").is_file()
    assert (tmp_path / "event-latency.png").is_file()
