"""Drift check on simulated feature frames, as a ratio to per-column scipy tests in the same run.

    .venv/bin/python -m benchmarks.run --only drift [--full]

Reference: the training set of the baseline simulation. Current: a seeded resample of the same
rows (unchanged), and the same customers simulated with covariate drift from the first day.
Baseline: a two-sample KS test per numerical column and a chi-squared test per categorical
column, on all rows, with the same p-value threshold and drift share. The project's check
samples each side to MLOPS_MONITORING__SAMPLE_ROWS with a seed, then runs Evidently with the
fixed methods.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from scipy import stats

from benchmarks.results import Result
from benchmarks.workload import KEY, LABEL, TIMESTAMP, Workspaces, merge_asof_baseline, timed
from mlops_flows.examples.churn.scenarios import Scenario
from mlops_flows.examples.churn.simulate import simulate

CATEGORICAL = ["plan", "region"]


def scipy_baseline(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], alpha: float
) -> set[str]:
    """Columns whose KS (numbers) or chi-squared (categories) p-value is below alpha."""
    drifted = set()
    for column in columns:
        if column in CATEGORICAL:
            counts = pd.concat(
                [reference[column].value_counts(), current[column].value_counts()], axis=1
            ).fillna(0)
            pvalue = stats.chi2_contingency(counts.to_numpy().T).pvalue
        else:
            pvalue = stats.ks_2samp(reference[column].to_numpy(), current[column].to_numpy()).pvalue
        if pvalue < alpha:
            drifted.add(column)
    return drifted


@contextmanager
def render_seconds() -> Iterator[list[float]]:
    """Seconds Evidently's DataDriftPreset spends drawing widgets while the block runs."""
    from evidently.presets.drift import DataDriftPreset

    original, spent = DataDriftPreset.render, [0.0]

    def render(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    DataDriftPreset.render = render
    try:
        yield spent
    finally:
        DataDriftPreset.render = original


def current_frame(size: str, workspaces: Workspaces, drifted: bool) -> pd.DataFrame:
    """Unchanged: a seeded resample of the reference's rows. Drifted: the same customers and
    seed simulated with covariate drift from the first day."""
    workspace = workspaces.get(size)
    if not drifted:
        return workspace.baseline_frame().sample(frac=1.0, replace=True, random_state=1)
    spec = dataclasses.replace(workspace.spec, scenario=Scenario.COVARIATE_DRIFT, drift_start_day=0)
    return merge_asof_baseline(simulate(spec))


def measure_drift(workspaces: Workspaces, size: str) -> list[Result]:
    """Project check and scipy on the same frames; verdicts compared."""
    from mlops_flows.adapters.drift import check_drift
    from mlops_flows.settings import MonitoringSettings

    settings = MonitoringSettings()
    reference = workspaces.get(size).baseline_frame()
    columns = [c for c in reference.columns if c not in (KEY, TIMESTAMP, LABEL)]
    check_drift(reference.head(2000), reference.tail(2000), columns, CATEGORICAL, settings)
    results = []
    for case, drifted in (("unchanged", False), ("covariate drift", True)):
        current = current_frame(size, workspaces, drifted)
        with render_seconds() as rendering:
            ours, result = timed(
                lambda c=current: check_drift(reference, c, columns, CATEGORICAL, settings)
            )
        theirs, baseline = timed(
            lambda c=current: scipy_baseline(reference, c, columns, settings.numerical_threshold)
        )
        baseline_drift = len(baseline) / len(columns) >= settings.drift_share
        same = "same verdict" if result.drifted == baseline_drift else "VERDICTS DIFFER"
        results.append(
            Result(
                stage="drift check",
                name=f"Evidently, {case}",
                size=f"{len(reference):,} vs {len(current):,} rows",
                measured=ours,
                baseline=theirs,
                baseline_name="scipy KS / chi-squared per column",
                target=3.0,
                note=f"{same}: project {result.status} {sorted(result.drifted_columns)} on "
                f"{result.reference_rows:,}-row samples; scipy "
                f"{'drift' if baseline_drift else 'no_drift'} {sorted(baseline)} on all rows. "
                f"Evidently drew its report's widgets for {rendering[0]:.2f} s of {ours:.2f} s; "
                "above the sample cap its cost hardly grows, so small sizes inflate the ratio",
            )
        )
    return results
