"""Integration tests: the real GX suites in `expectations/` run on small inline frames."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_flows.adapters.validation import (
    ValidationResult,
    load_suite,
    suite_digest,
    validate_frame,
)

pytestmark = [
    pytest.mark.integration,
]

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"
TRAINING_SUITE = EXPECTATIONS / "training_set.json"
SCORING_SUITE = EXPECTATIONS / "scoring_set.json"


def valid_training_set(rows: int = 600, seed: int = 7) -> pd.DataFrame:
    """A training set that meets every expectation of the training suite."""
    rng = np.random.default_rng(seed)
    sessions = rng.integers(1, 60, rows)
    minutes = rng.uniform(0, 3_000, rows)
    charge = rng.uniform(10, 200, rows)
    days = pd.to_timedelta(rng.integers(0, 90, rows), unit="D")
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1, dtype="int64"),
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC") + days,
            "churned": (rng.random(rows) < 0.2).astype("int64"),
            "plan": rng.choice(["basic", "standard", "premium"], rows).astype(object),
            "region": rng.choice(["north", "south", "east", "west"], rows).astype(object),
            "tenure_months": rng.integers(0, 120, rows),
            "monthly_charge": charge,
            "sessions_7d": sessions,
            "minutes_7d": minutes,
            "days_since_last_login": rng.integers(0, 60, rows),
            "support_tickets_30d": rng.integers(0, 5, rows),
            "payment_failures_90d": rng.integers(0, 3, rows),
            "minutes_per_session": minutes / sessions,
            "charge_per_hour_used": np.minimum(charge / np.maximum(minutes / 60, 1), 500),
        }
    )


def valid_scoring_set() -> pd.DataFrame:
    """A scoring set: the training set without its label."""
    return valid_training_set().drop(columns="churned")


def failed_names(result: ValidationResult) -> set[tuple[str, str | None]]:
    """(expectation type, column) of every failed expectation."""
    return {(failure.expectation_type, failure.column) for failure in result.failed}


def with_nulls_in_minutes(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[[3, 5], "minutes_7d"] = np.nan
    return frame


def with_negative_tenure(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[0, "tenure_months"] = -5
    return frame


def with_unknown_plan(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[1, "plan"] = "gold"
    return frame


def with_number_in_region(frame: pd.DataFrame) -> pd.DataFrame:
    # The set check is the text columns' type check too (the suites keep no per-value one).
    frame.loc[2, "region"] = 7
    return frame


def with_bytes_in_plan(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[4, "plan"] = b"basic"
    return frame


def with_renamed_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"sessions_7d": "session_count_7d"})


def with_extra_column(frame: pd.DataFrame) -> pd.DataFrame:
    # GX drops `exact_match: true` from the JSON (it is the default); this pins it.
    return frame.assign(debug_flag=0)


def with_duplicated_key(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[7]]], ignore_index=True)


def with_too_few_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.head(100)


def with_everyone_churned(frame: pd.DataFrame) -> pd.DataFrame:
    frame["churned"] = 1
    return frame


CORRUPTIONS: list[tuple[Callable[[pd.DataFrame], pd.DataFrame], str, str | None]] = [
    (with_nulls_in_minutes, "expect_column_values_to_not_be_null", "minutes_7d"),
    (with_negative_tenure, "expect_column_min_to_be_between", "tenure_months"),
    (with_unknown_plan, "expect_column_distinct_values_to_be_in_set", "plan"),
    (with_number_in_region, "expect_column_distinct_values_to_be_in_set", "region"),
    (with_bytes_in_plan, "expect_column_distinct_values_to_be_in_set", "plan"),
    (with_renamed_column, "expect_table_columns_to_match_set", None),
    (with_extra_column, "expect_table_columns_to_match_set", None),
    (with_duplicated_key, "expect_compound_columns_to_be_unique", None),
    (with_too_few_rows, "expect_table_row_count_to_be_between", None),
    (with_everyone_churned, "expect_column_mean_to_be_between", "churned"),
]


@pytest.mark.parametrize(
    ("frame", "suite"),
    [(valid_training_set, TRAINING_SUITE), (valid_scoring_set, SCORING_SUITE)],
    ids=["training", "scoring"],
)
def test_valid_frame_passes(frame: Callable[[], pd.DataFrame], suite: Path) -> None:
    result = validate_frame(frame(), suite)
    assert result.success, result.summary()
    assert result.failed == ()
    assert result.evaluated == len(load_suite(suite).expectations)
    assert result.row_count == 600
    assert result.suite_digest == suite_digest(suite)


@pytest.mark.parametrize(
    ("corrupt", "expectation_type", "column"),
    CORRUPTIONS,
    ids=[corrupt.__name__ for corrupt, _, _ in CORRUPTIONS],
)
def test_corruption_fails_the_right_expectation(
    corrupt: Callable[[pd.DataFrame], pd.DataFrame], expectation_type: str, column: str | None
) -> None:
    result = validate_frame(corrupt(valid_training_set()), TRAINING_SUITE)
    assert not result.success
    assert (expectation_type, column) in failed_names(result), result.summary()
    assert expectation_type in result.summary()
    json.dumps(result.to_dict(), allow_nan=False)


def test_failure_reports_what_was_found() -> None:
    frame = with_unknown_plan(with_negative_tenure(with_nulls_in_minutes(valid_training_set())))
    found = {failure.column: failure for failure in validate_frame(frame, TRAINING_SUITE).failed}
    assert found["minutes_7d"].unexpected_count == 2
    assert found["tenure_months"].observed == -5
    assert found["plan"].unexpected_examples == ["gold"]


def test_renamed_column_is_reported_not_raised() -> None:
    result = validate_frame(with_renamed_column(valid_training_set()), TRAINING_SUITE)
    schema = next(f for f in result.failed if f.column is None)
    assert schema.observed == {"missing": ["sessions_7d"], "unexpected": ["session_count_7d"]}
    # Checks on the missing column cannot run; GX's error surfaces as a failed expectation.
    unevaluated = [f for f in result.failed if f.column == "sessions_7d"]
    assert unevaluated
    assert all(f.error for f in unevaluated)
    assert result.failed[0] is schema  # failures are listed in suite order


def test_scoring_suite_has_no_label_checks() -> None:
    assert validate_frame(valid_scoring_set().head(1), SCORING_SUITE).success
    result = validate_frame(valid_training_set(), SCORING_SUITE)
    assert failed_names(result) == {("expect_table_columns_to_match_set", None)}


def test_scoring_suite_rejects_duplicated_keys() -> None:
    frame = with_duplicated_key(valid_scoring_set())
    result = validate_frame(frame, SCORING_SUITE)
    assert ("expect_compound_columns_to_be_unique", None) in failed_names(result)


def test_suite_digest_is_stable_and_follows_changes(tmp_path: Path) -> None:
    suite = shutil.copy(TRAINING_SUITE, tmp_path / "training_set.json")
    first = validate_frame(valid_training_set(), suite)
    assert first.suite_digest == suite_digest(suite) == suite_digest(TRAINING_SUITE)

    document = json.loads(suite.read_text(encoding="utf-8"))
    row_count = next(
        e for e in document["expectations"] if e["type"] == "expect_table_row_count_to_be_between"
    )
    row_count["kwargs"]["min_value"] = 1_000
    suite.write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")

    second = validate_frame(valid_training_set(), suite)
    assert second.suite_digest == suite_digest(suite) != first.suite_digest
    assert failed_names(second) == {("expect_table_row_count_to_be_between", None)}


def test_suite_files_round_trip_through_gx() -> None:
    for path in (TRAINING_SUITE, SCORING_SUITE):
        document = json.loads(path.read_text(encoding="utf-8"))
        suite = load_suite(path)
        assert suite.name == path.stem
        assert "guards" in suite.meta
        assert len(suite.expectations) == len(document["expectations"])
        assert "id" not in document
        assert all("id" not in expectation for expectation in document["expectations"])


def test_suite_with_an_invalid_expectation_is_refused(tmp_path: Path) -> None:
    document = json.loads(TRAINING_SUITE.read_text(encoding="utf-8"))
    document["expectations"].append({"type": "expect_column_values_to_be_between", "kwargs": {}})
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json"):
        validate_frame(valid_training_set(), path)


def test_missing_suite_raises_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.json"):
        validate_frame(valid_training_set(), tmp_path / "absent.json")


def test_validation_writes_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    validate_frame(with_too_few_rows(valid_training_set()), TRAINING_SUITE)
    assert list(tmp_path.iterdir()) == []
