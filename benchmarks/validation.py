"""GX validation of the training suite against the same checks written as vectorised pandas."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.results import Result
from benchmarks.workload import Workspaces, timed

Check = Callable[[pd.DataFrame, dict[str, Any]], bool]


def _in_types(frame: pd.DataFrame, kwargs: dict[str, Any]) -> bool:
    column = frame[kwargs["column"]]
    if column.dtype != object:
        return column.dtype.name in kwargs["type_list"]
    names = {type(value).__name__ for value in column.dropna().unique()}
    return names <= set(kwargs["type_list"])


def _between(value: float, kwargs: dict[str, Any]) -> bool:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    return (low is None or value >= low) and (high is None or value <= high)


CHECKS: dict[str, Check] = {
    "expect_table_columns_to_match_set": lambda f, k: set(f.columns) == set(k["column_set"]),
    "expect_table_row_count_to_be_between": lambda f, k: _between(len(f), k),
    "expect_compound_columns_to_be_unique": lambda f, k: not f.duplicated(k["column_list"]).any(),
    "expect_column_values_to_not_be_null": lambda f, k: not f[k["column"]].isna().any(),
    "expect_column_values_to_be_in_type_list": _in_types,
    "expect_column_type_to_be": lambda f, k: str(f[k["column"]].dtype) == k["type_"],
    "expect_column_distinct_values_to_be_in_set": lambda f, k: (
        set(f[k["column"]].dropna().unique()) <= set(k["value_set"])
    ),
    "expect_column_mean_to_be_between": lambda f, k: _between(f[k["column"]].mean(), k),
    "expect_column_min_to_be_between": lambda f, k: _between(f[k["column"]].min(), k),
    "expect_column_max_to_be_between": lambda f, k: _between(f[k["column"]].max(), k),
}


def pandas_validate(frame: pd.DataFrame, suite_path: Path) -> list[str]:
    """The suite's checks in plain pandas; the types of the expectations that failed."""
    suite = json.loads(suite_path.read_text())
    failed = []
    for expectation in suite["expectations"]:
        kind = expectation.get("type") or expectation["expectation_type"]
        if not CHECKS[kind](frame, expectation["kwargs"]):
            failed.append(f"{kind}({expectation['kwargs'].get('column', '')})")
    return failed


def measure_validation(workspaces: Workspaces, size: str, repeats: int) -> list[Result]:
    """GX on the full training suite against pandas, median of `repeats`, same verdict."""
    from mlops_flows.adapters.validation import validate_frame
    from mlops_flows.settings import Settings

    workspace = workspaces.get(size)
    workspace.activate()
    suite = Settings().suite_path("training_set")
    frame = workspace.frames.get("project", workspace.baseline_frame())
    validate_frame(frame.head(1000), suite)  # warm-up: GX import and first context
    ours, theirs = [], []
    for _ in range(repeats):
        seconds, result = timed(lambda: validate_frame(frame, suite))
        ours.append(seconds)
        seconds, failed = timed(lambda: pandas_validate(frame, suite))
        theirs.append(seconds)
    same = "same verdict" if result.success == (not failed) else "VERDICTS DIFFER"
    mean_seconds = _one_expectation_seconds(frame, suite, "expect_column_mean_to_be_between")
    return [
        Result(
            stage="validation",
            name=f"GX suite training_set ({result.evaluated} expectations)",
            size=f"{len(frame):,} rows",
            measured=statistics.median(ours),
            baseline=statistics.median(theirs),
            baseline_name="vectorised pandas",
            target=3.0,
            note=f"GX success={result.success}, pandas failures={len(failed)}: {same}; "
            f"median of {repeats}. GX's expect_column_mean_to_be_between alone takes "
            f"{mean_seconds:.2f} s: its column.mean looks at every value for a Decimal first",
        )
    ]


def _one_expectation_seconds(frame: pd.DataFrame, suite_path: Path, kind: str) -> float:
    """Seconds GX takes to validate the frame against the suite's expectations of one type."""
    import tempfile

    from mlops_flows.adapters.validation import validate_frame

    suite = json.loads(suite_path.read_text())
    suite["expectations"] = [e for e in suite["expectations"] if e["type"] == kind]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "one.json"
        path.write_text(json.dumps(suite))
        seconds, _ = timed(lambda: validate_frame(frame, path))
    return seconds
