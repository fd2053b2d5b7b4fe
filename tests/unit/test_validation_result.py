"""Unit tests of validation result values, their messages and suite digests (no GX import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_flows.adapters.validation import (
    DataValidationError,
    FailedExpectation,
    ValidationResult,
    load_suite,
    suite_digest,
)

SUITE: dict[str, Any] = {
    "name": "training_set",
    "meta": {"guards": "a test suite"},
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 500}},
    ],
}


def failed(**overrides: Any) -> FailedExpectation:
    """A failed row-level expectation, with any field overridden."""
    fields: dict[str, Any] = {
        "expectation_type": "expect_column_values_to_not_be_null",
        "column": "minutes_7d",
        "kwargs": {"column": "minutes_7d"},
        "observed": None,
        "unexpected_count": 3,
        "unexpected_examples": [None, None, None],
    }
    return FailedExpectation(**(fields | overrides))


def result(*failures: FailedExpectation) -> ValidationResult:
    """A validation result failing with `failures` (passing when there are none)."""
    return ValidationResult(
        suite_name="training_set",
        suite_digest="ab" * 32,
        success=not failures,
        evaluated=44,
        row_count=600,
        failed=failures,
    )


def write_suite(path: Path, document: Any, **dump: Any) -> Path:
    """Write `document` as JSON to `path` and return the path."""
    path.write_text(json.dumps(document, **dump), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("failure", "expected_parts"),
    [
        (failed(), ["column 'minutes_7d'", "expect_column_values_to_not_be_null", "3 unexpected"]),
        (
            failed(
                expectation_type="expect_column_min_to_be_between",
                column="tenure_months",
                kwargs={"column": "tenure_months", "min_value": 0},
                observed=np.int64(-5),
                unexpected_count=None,
                unexpected_examples=[],
            ),
            ["column 'tenure_months'", "min_value=0", "found -5"],
        ),
        (
            failed(
                expectation_type="expect_table_columns_to_match_set",
                column=None,
                kwargs={"column_set": ["a", "b"], "exact_match": True},
                observed={"missing": ["b"], "unexpected": ["c"]},
                unexpected_count=None,
                unexpected_examples=[],
            ),
            ["table:", "expect_table_columns_to_match_set", "'missing': ['b']"],
        ),
        (
            failed(error='The column "sessions_7d" in BatchData does not exist.'),
            ["GX could not evaluate it", "sessions_7d"],
        ),
    ],
)
def test_describe_says_what_was_expected_and_found(
    failure: FailedExpectation, expected_parts: list[str]
) -> None:
    line = failure.describe()
    assert "\n" not in line
    for part in expected_parts:
        assert part in line


def test_describe_shows_a_few_examples_as_plain_values() -> None:
    stamp = pd.Timestamp("2024-01-17", tz="UTC")
    examples = [{"customer_id": np.int64(8), "event_timestamp": stamp}] * 9
    failure = failed(
        expectation_type="expect_compound_columns_to_be_unique",
        column=None,
        unexpected_count=9,
        unexpected_examples=examples,
    )
    line = failure.describe()
    assert line.count("2024-01-17T00:00:00+00:00") == 5
    assert "np.int64" not in line


def test_summary_of_a_pass_names_suite_and_size() -> None:
    summary = result().summary()
    assert summary.startswith("Data validation passed")
    assert "'training_set'" in summary
    assert "600 rows" in summary


def test_summary_of_a_failure_names_every_failed_expectation_and_what_to_do() -> None:
    failures = (
        failed(),
        failed(expectation_type="expect_column_distinct_values_to_be_in_set", column="plan"),
    )
    summary = result(*failures).summary()
    assert "2 of 44 expectations" in summary
    assert "expect_column_values_to_not_be_null" in summary
    assert "expect_column_distinct_values_to_be_in_set" in summary
    assert "column 'plan'" in summary
    assert "Fix the data upstream" in summary
    assert "update the suite 'training_set'" in summary


def test_to_dict_is_json_serialisable_with_numpy_and_pandas_values() -> None:
    failure = failed(
        kwargs={"column": "churned", "min_value": np.float64(0.02)},
        observed=np.float64(1.0),
        unexpected_count=np.int64(2),  # type: ignore[arg-type]
        unexpected_examples=[
            np.int64(3),
            float("nan"),
            pd.Timestamp("2024-01-01", tz="UTC"),
            {"customer_id": np.int64(8), "flag": np.bool_(True)},
        ],
    )
    document = result(failure).to_dict()
    round_trip = json.loads(json.dumps(document, allow_nan=False))
    (entry,) = round_trip["failed"]
    assert round_trip["success"] is False
    assert entry["observed"] == 1.0
    assert entry["unexpected_count"] == 2
    assert entry["unexpected_examples"] == [
        3,
        None,
        "2024-01-01T00:00:00+00:00",
        {"customer_id": 8, "flag": True},
    ]
    assert entry["description"] == failure.describe()


def test_data_validation_error_carries_the_result_and_its_summary() -> None:
    outcome = result(failed())
    error = DataValidationError(outcome)
    assert error.result is outcome
    assert str(error) == outcome.summary()


def test_suite_digest_ignores_formatting_and_key_order(tmp_path: Path) -> None:
    pretty = write_suite(tmp_path / "pretty.json", SUITE, indent=2, sort_keys=True)
    reordered = dict(reversed(list(SUITE.items())))
    compact = write_suite(tmp_path / "compact.json", reordered, separators=(",", ":"))
    assert suite_digest(pretty) == suite_digest(compact)
    assert len(suite_digest(pretty)) == 64


def test_suite_digest_changes_with_content(tmp_path: Path) -> None:
    before = suite_digest(write_suite(tmp_path / "suite.json", SUITE))
    changed = json.loads(json.dumps(SUITE))
    changed["expectations"][0]["kwargs"]["min_value"] = 400
    assert suite_digest(write_suite(tmp_path / "suite.json", changed)) != before


@pytest.mark.parametrize("read", [suite_digest, load_suite])
def test_missing_suite_names_the_path(read: Any, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json"):
        read(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a GX suite"),
        ('{"name": "x"}', "not a GX suite"),
        ('{"name": 3, "expectations": []}', "not a GX suite"),
    ],
)
def test_invalid_suite_file_is_a_value_error_naming_the_path(
    content: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as raised:
        suite_digest(path)
    assert "broken.json" in str(raised.value)


def test_importing_the_module_does_not_import_great_expectations() -> None:
    probe = (
        "import sys, mlops_flows.adapters.validation; print('great_expectations' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "False"
