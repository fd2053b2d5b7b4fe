"""Drift check time on 1M vs 1M rows, as a ratio to per-column scipy tests in the same run.

    .venv/bin/python benchmarks/drift_check.py [--rows 1000000]

Baseline: two-sample KS per numerical column and a two-sample chi-squared test per categorical
column, on all rows. The project's check samples each side to MLOPS_MONITORING__SAMPLE_ROWS with
a seed, then runs Evidently with the methods and thresholds fixed in settings.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

from flows.drift import check_drift
from flows.settings import MonitoringSettings

NUMERICAL = [f"x{i}" for i in range(9)]
CATEGORICAL = ["plan", "region"]


def make_frame(rows: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {c: rng.normal(shift if i < 4 else 0.0, 1.0, rows) for i, c in enumerate(NUMERICAL)}
    )
    frame["plan"] = rng.choice(["basic", "standard", "premium"], rows, p=[0.45, 0.35, 0.2])
    frame["region"] = rng.choice(["north", "south", "east", "west"], rows)
    return frame


def scipy_baseline(reference: pd.DataFrame, current: pd.DataFrame, alpha: float) -> set[str]:
    drifted = set()
    for column in NUMERICAL:
        if stats.ks_2samp(reference[column], current[column]).pvalue < alpha:
            drifted.add(column)
    for column in CATEGORICAL:
        table = pd.crosstab(
            np.r_[np.zeros(len(reference)), np.ones(len(current))],
            np.r_[reference[column].to_numpy(), current[column].to_numpy()],
        )
        if stats.chi2_contingency(table).pvalue < alpha:
            drifted.add(column)
    return drifted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    settings = MonitoringSettings()
    check_drift(
        make_frame(2000, 1, 0),
        make_frame(2000, 2, 0),
        NUMERICAL + CATEGORICAL,
        CATEGORICAL,
        settings,
    )  # warm-up: Evidently's import and first report
    print("| case | project (s) | scipy (s) | ratio | project verdict | scipy verdict |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case, shift in (("no change", 0.0), ("4 columns shifted by 0.05 sd", 0.05)):
        reference, current = make_frame(rows, 1, 0.0), make_frame(rows, 2, shift)
        started = time.perf_counter()
        result = check_drift(reference, current, NUMERICAL + CATEGORICAL, CATEGORICAL, settings)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        baseline = scipy_baseline(reference, current, settings.numerical_threshold)
        theirs = time.perf_counter() - started
        print(
            f"| {case} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x | "
            f"{sorted(result.drifted_columns)} | {sorted(baseline)} |"
        )


if __name__ == "__main__":
    main()
