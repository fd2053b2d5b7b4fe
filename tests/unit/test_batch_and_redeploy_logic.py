"""Pure parts of batch scoring and redeploy: population, output, skew comparison, sample."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_flows.adapters.batch_scoring import (
    OUTPUT_COLUMNS,
    PopulationError,
    extract_population,
    output_name,
    prediction_table,
    score_distribution,
    to_utc,
    write_atomically,
)
from mlops_flows.logic.redeploy import (
    Rollback,
    champion_mismatch,
    compare_scores,
    sample_customers,
)

AS_OF = datetime(2026, 6, 30, 23, 59, tzinfo=UTC)


# --- population ----------------------------------------------------------------------------


def _profile(rows: list[tuple[int, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [customer for customer, _ in rows],
            "event_timestamp": pd.to_datetime(
                [stamp for _, stamp in rows], utc=True, format="ISO8601"
            ),
            "plan": ["basic"] * len(rows),
        }
    )


def test_population_is_every_id_once_sorted() -> None:
    source = _profile([(1002, "2026-06-01"), (1000, "2026-06-01"), (1002, "2026-06-29")])
    assert extract_population(source, "customer_id", "event_timestamp", AS_OF) == [1000, 1002]


def test_population_leaves_out_ids_first_seen_after_as_of() -> None:
    source = _profile([(1000, "2026-06-01"), (1001, "2026-07-01"), (1002, "2026-06-30 23:59")])
    assert extract_population(source, "customer_id", "event_timestamp", AS_OF) == [1000, 1002]


def test_population_reads_naive_source_times_as_utc() -> None:
    source = _profile([(1000, "2026-06-30 23:00")])
    source["event_timestamp"] = source["event_timestamp"].dt.tz_localize(None)
    naive_as_of = datetime(2026, 6, 30, 23, 30)
    assert extract_population(source, "customer_id", "event_timestamp", naive_as_of) == [1000]


def test_population_returns_plain_ints() -> None:
    source = _profile([(1000, "2026-06-01")])
    (customer,) = extract_population(source, "customer_id", "event_timestamp", AS_OF)
    assert type(customer) is int


def test_population_names_a_missing_column() -> None:
    source = _profile([(1000, "2026-06-01")]).rename(columns={"customer_id": "id"})
    with pytest.raises(PopulationError, match=r"lacks column 'customer_id' \(found: id, "):
        extract_population(source, "customer_id", "event_timestamp", AS_OF)


# --- output --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "name"),
    [
        (AS_OF, "batch-20260630T2359.parquet"),
        (datetime(2026, 6, 30, 23, 59, 59, 999), "batch-20260630T2359.parquet"),  # naive = UTC
        (
            datetime(2026, 7, 1, 1, 5, tzinfo=timezone(timedelta(hours=2))),
            "batch-20260630T2305.parquet",
        ),
    ],
)
def test_output_name_is_the_utc_minute(as_of: datetime, name: str) -> None:
    assert output_name(as_of) == name


def test_to_utc_keeps_the_instant() -> None:
    moment = datetime(2026, 7, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_utc(moment) == moment
    assert to_utc(moment).tzinfo is UTC


def test_prediction_table_has_the_output_columns_and_types() -> None:
    table = prediction_table([1000, 1001], np.array([0.25, 0.75]), AS_OF, "churn", "2", "svc_v1")
    assert tuple(table.columns) == OUTPUT_COLUMNS
    assert table["customer_id"].dtype == "int64"
    assert str(table["as_of"].dtype) == "datetime64[ns, UTC]"
    assert (table["as_of"] == pd.Timestamp(AS_OF)).all()
    assert table["churn_probability"].tolist() == [0.25, 0.75]
    assert set(table["model_version"]) == {"2"}
    assert set(table["feature_service"]) == {"svc_v1"}


def test_prediction_table_refuses_unequal_lengths() -> None:
    with pytest.raises(ValueError, match=r"2 entity ids but 1 scores"):
        prediction_table([1000, 1001], np.array([0.5]), AS_OF, "churn", "2", "svc_v1")


def test_write_atomically_leaves_only_the_final_file(tmp_path: Path) -> None:
    frame = pd.DataFrame({"customer_id": [1, 2]})
    path = write_atomically(frame, tmp_path / "predictions" / "batch.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["batch.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "batch.parquet"
    pd.DataFrame({"customer_id": [1]}).to_parquet(path)
    unwritable = pd.DataFrame({"customer_id": [object()]})  # pyarrow cannot convert it
    with pytest.raises(pa.ArrowException):
        write_atomically(unwritable, path)
    assert [p.name for p in tmp_path.iterdir()] == ["batch.parquet"]
    assert pd.read_parquet(path)["customer_id"].tolist() == [1]


def test_score_distribution_quantiles_and_bands() -> None:
    spread = score_distribution(np.array([0.0, 0.1, 0.3, 0.5, 0.9, 1.0]))
    assert spread.count == 6
    assert spread.mean == pytest.approx(2.8 / 6)
    assert spread.quantiles["min"] == 0.0
    assert spread.quantiles["max"] == 1.0
    assert spread.quantiles["p50"] == pytest.approx(0.4)
    assert dict(spread.bands) == {
        "0.0-0.2": 2,
        "0.2-0.4": 1,
        "0.4-0.6": 1,
        "0.6-0.8": 0,
        "0.8-1.0": 2,  # the top band holds exactly 1.0
    }


def test_score_distribution_of_nothing() -> None:
    spread = score_distribution(np.array([]))
    assert spread.count == 0
    assert math.isnan(spread.mean)
    assert spread.bands == ()


# --- skew check ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("online", "offline", "passed", "mismatched", "largest"),
    [
        ({1: 0.5, 2: 0.25}, {1: 0.5, 2: 0.25}, True, 0, 0.0),
        ({1: 0.5 + 9e-7}, {1: 0.5}, True, 0, 9e-7),
        ({1: 0.5 + 2e-6, 2: 0.25}, {1: 0.5, 2: 0.25}, False, 1, 2e-6),
        ({1: 0.5}, {1: 0.5, 2: 0.25}, False, 1, 0.0),  # the service left a customer out
        ({1: 0.5, 3: 0.1}, {1: 0.5}, False, 1, 0.0),  # the service scored a stranger
        ({1: float("nan")}, {1: 0.5}, False, 1, None),
        ({}, {}, False, 0, None),  # nothing compared is not a pass
    ],
)
def test_compare_scores(
    online: dict[int, float],
    offline: dict[int, float],
    passed: bool,
    mismatched: int,
    largest: float | None,
) -> None:
    check = compare_scores(online, offline, tolerance=1e-6)
    assert check.passed is passed
    assert check.mismatched == mismatched
    assert check.compared == len(set(online) | set(offline))
    assert check.tolerance == 1e-6
    if largest is None:
        assert check.max_abs_difference is None
    else:
        assert check.max_abs_difference == pytest.approx(largest, abs=1e-12)


def test_compare_scores_explains_a_mismatch() -> None:
    check = compare_scores({1: 0.6, 2: 0.2}, {1: 0.5, 2: 0.2, 3: 0.1})
    assert len(check.examples) == 2
    assert "differ for 2 of 3 customers" in check.reason
    assert "customer 1: online 0.600000000, offline 0.500000000" in check.reason
    assert "customer 3: online missing, offline 0.100000000" in check.reason


def test_compare_scores_passing_reason_counts_customers() -> None:
    assert compare_scores({1: 0.5}, {1: 0.5}).reason.startswith("1 customers agree within 1e-06")


def test_skew_row_names_every_value() -> None:
    row = compare_scores({1: 0.5}, {1: 0.5}).to_row()
    assert set(row) == {
        "passed",
        "compared",
        "mismatched",
        "max_abs_difference",
        "tolerance",
        "reason",
    }


# --- sample, champion check, rollback summary ---------------------------------------------


def test_sample_is_seeded_sorted_and_without_repeats() -> None:
    population = list(range(1000, 1600))
    first = sample_customers(population, 20, seed=42)
    assert first == sample_customers(list(reversed(population)), 20, seed=42)
    assert first != sample_customers(population, 20, seed=43)
    assert first == sorted(set(first))
    assert len(first) == 20
    assert set(first) <= set(population)


def test_sample_of_a_small_population_is_all_of_it() -> None:
    assert sample_customers([3, 1, 2, 1], 20, seed=0) == [1, 2, 3]


def test_sample_needs_a_positive_size() -> None:
    with pytest.raises(ValueError, match=r"at least one customer"):
        sample_customers([1, 2], 0, seed=0)


@pytest.mark.parametrize(
    ("champion", "version", "expected"),
    [
        ("2", "2", None),
        (
            "1",
            "2",
            "parameter `version`='2' is not the champion: the alias `champion` points at version 1",
        ),
        (None, "2", "points at no version"),
    ],
)
def test_champion_mismatch(champion: str | None, version: str, expected: str | None) -> None:
    message = champion_mismatch(champion, version)
    if expected is None:
        assert message is None
    else:
        assert message is not None
        assert expected in message


@pytest.mark.parametrize(
    ("rollback", "expected"),
    [
        (
            Rollback("2", "1", "boom", None, "1"),
            "Redeploy of v2 failed (boom); champion moved back from v2 to v1; the service "
            "now serves v1",
        ),
        (
            Rollback("1", None, "boom", "not reachable", None),
            "Redeploy of v1 failed (boom); v1 stays champion: there is no previous version to "
            "restore; the service could not be reloaded: not reachable",
        ),
    ],
)
def test_rollback_summary(rollback: Rollback, expected: str) -> None:
    assert rollback.summary() == expected


# --- reload token --------------------------------------------------------------------------


def test_without_a_reload_token_the_error_says_how_to_get_one(tmp_path: Path) -> None:
    from mlops_flows.serving.contract import reload_token
    from mlops_flows.settings import Settings

    settings = Settings(home=tmp_path / "workspace")
    with pytest.raises(
        FileNotFoundError, match=r"start the service .* MLOPS_SERVING__RELOAD_TOKEN"
    ):
        reload_token(settings)
    made = reload_token(settings, create=True)
    assert reload_token(settings) == made


def test_logging_no_predictions_writes_nothing(tmp_path: Path) -> None:
    from mlops_flows.serving.contract import PredictionLog

    PredictionLog(tmp_path / "predictions").append([])
    assert not (tmp_path / "predictions").exists()
