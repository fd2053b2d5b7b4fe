"""Unit tests of the drift check (real Evidently on inline frames) and of performance decay."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_flows.adapters.drift import (
    DriftInputError,
    DriftReportError,
    DriftStatus,
    check_drift,
    check_segment_drift,
    entity_frame,
    split_by_segment,
    window_midnights,
)
from mlops_flows.logic.decay import performance_decay
from mlops_flows.settings import MonitoringSettings

COLUMNS = ["amount", "visits", "plan"]
CATEGORICAL = ["plan"]
PLANS = ("basic", "standard", "premium")


def frame(
    rows: int, seed: int, amount_shift: float = 0.0, mix: tuple[float, ...] = (0.5, 0.3, 0.2)
) -> pd.DataFrame:
    """A numeric, a count and a categorical column; shift and mix change their distributions."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(50.0 + amount_shift, 10.0, rows),
            "visits": rng.poisson(3.0, rows).astype("int64"),
            "plan": rng.choice(PLANS, rows, p=list(mix)),
        }
    )


def settings(**overrides: Any) -> MonitoringSettings:
    return MonitoringSettings(**({"min_rows": 100} | overrides))


def test_identical_distributions_do_not_drift() -> None:
    result = check_drift(frame(2000, 1), frame(2000, 2), COLUMNS, CATEGORICAL, settings())
    assert result.status == DriftStatus.NO_DRIFT
    assert not result.drifted
    assert result.drifted_columns == ()
    assert result.drift_share == 0.0
    assert set(result.scores) == set(COLUMNS)
    assert not any(score.drifted for score in result.scores.values())
    assert "0 of 3 columns drifted" in result.reason


def test_shifted_number_and_changed_mix_drift_naming_exactly_those_columns(
    tmp_path: Path,
) -> None:
    current = frame(2000, 2, amount_shift=5.0, mix=(0.2, 0.3, 0.5))
    result = check_drift(frame(2000, 1), current, COLUMNS, CATEGORICAL, settings())
    assert result.status == DriftStatus.DRIFT
    assert result.drifted_columns == ("amount", "plan")
    assert result.drift_share == pytest.approx(2 / 3)
    assert not result.scores["visits"].drifted
    assert "amount, plan" in result.reason
    html = result.save_html(tmp_path / "report.html")
    assert html.stat().st_size > 10_000
    assert "<html" in html.read_text(encoding="utf-8")[:2000].lower()


def test_drift_share_threshold_decides_the_data_set_verdict() -> None:
    current = frame(2000, 2, amount_shift=5.0)  # one of three columns drifts
    below = check_drift(frame(2000, 1), current, COLUMNS, CATEGORICAL, settings(drift_share=0.5))
    at = check_drift(frame(2000, 1), current, COLUMNS, CATEGORICAL, settings(drift_share=1 / 3))
    assert below.drifted_columns == at.drifted_columns == ("amount",)
    assert (below.status, at.status) == (DriftStatus.NO_DRIFT, DriftStatus.DRIFT)
    assert below.threshold == 0.5


@pytest.mark.parametrize("rows", [0, 1, 99])
def test_too_few_current_rows_is_not_enough_data(rows: int, tmp_path: Path) -> None:
    result = check_drift(frame(2000, 1), frame(rows, 2), COLUMNS, CATEGORICAL, settings())
    assert result.status == DriftStatus.NOT_ENOUGH_DATA
    assert not result.drifted
    assert result.drift_share is None
    assert result.scores == {}
    assert result.current_rows_total == rows
    assert f"{rows} current row(s)" in result.reason
    assert "at least 100" in result.reason
    with pytest.raises(DriftReportError, match="not enough data"):
        result.save_html(tmp_path / "report.html")


def test_an_empty_frame_without_columns_is_not_enough_data() -> None:
    result = check_drift(frame(2000, 1), pd.DataFrame(), COLUMNS, CATEGORICAL, settings())
    assert result.status == DriftStatus.NOT_ENOUGH_DATA


def test_sampling_caps_each_side_and_is_deterministic() -> None:
    reference, current = frame(3000, 1), frame(5000, 2, amount_shift=1.0)
    capped = settings(sample_rows=500, seed=7)
    first = check_drift(reference, current, COLUMNS, CATEGORICAL, capped)
    again = check_drift(reference, current, COLUMNS, CATEGORICAL, capped)
    other = check_drift(reference, current, COLUMNS, CATEGORICAL, settings(sample_rows=500, seed=8))
    assert (first.reference_rows, first.current_rows) == (500, 500)
    assert (first.reference_rows_total, first.current_rows_total) == (3000, 5000)
    assert first == again  # the report is left out of the comparison
    assert first.scores != other.scores
    full = check_drift(reference, current, COLUMNS, CATEGORICAL, settings(sample_rows=10_000))
    assert (full.reference_rows, full.current_rows) == (3000, 5000)


@pytest.mark.parametrize(
    ("numerical", "numerical_threshold", "categorical", "categorical_threshold"),
    [
        ("ks", 0.02, "chisquare", 0.03),
        # Distances: drifted when the score is at or above the threshold, Evidently's verdict.
        ("wasserstein", 0.2, "jensenshannon", 0.15),
    ],
)
def test_methods_and_thresholds_are_the_ones_from_settings(
    numerical: str, numerical_threshold: float, categorical: str, categorical_threshold: float
) -> None:
    chosen = settings(
        numerical_method=numerical,
        numerical_threshold=numerical_threshold,
        categorical_method=categorical,
        categorical_threshold=categorical_threshold,
    )
    current = frame(2000, 2, amount_shift=5.0, mix=(0.2, 0.3, 0.5))
    result = check_drift(frame(2000, 1), current, COLUMNS, CATEGORICAL, chosen)
    expected = {
        "amount": (numerical, numerical_threshold),
        "visits": (numerical, numerical_threshold),
        "plan": (categorical, categorical_threshold),
    }
    assert {c: (s.method, s.threshold) for c, s in result.scores.items()} == expected
    assert result.drifted_columns == ("amount", "plan")


def test_rows_and_payload_are_plain_json() -> None:
    result = check_drift(frame(500, 1), frame(500, 2), COLUMNS, CATEGORICAL, settings())
    rows = result.to_rows()
    assert [row["feature"] for row in rows] == COLUMNS
    assert set(rows[0]) == {"feature", "method", "score", "threshold", "drifted"}
    payload = json.loads(json.dumps(result.to_payload()))
    assert payload["status"] == DriftStatus.NO_DRIFT
    assert payload["scores"]["plan"]["method"] == "jensenshannon"
    assert payload["current_rows"] == 500


@pytest.mark.parametrize(
    ("columns", "categorical", "current", "message"),
    [
        ([], [], frame(500, 2), "No columns"),
        (COLUMNS, ["region"], frame(500, 2), r"Categorical column\(s\) region"),
        (
            COLUMNS,
            CATEGORICAL,
            frame(500, 2).drop(columns="visits"),
            r"current frame lacks.*visits",
        ),
    ],
)
def test_mismatched_columns_are_named(
    columns: list[str], categorical: list[str], current: pd.DataFrame, message: str
) -> None:
    with pytest.raises(DriftInputError, match=message):
        check_drift(frame(500, 1), current, columns, categorical, settings())


# y_score ranks 3 of 4 positive-negative pairs correctly: ROC AUC 0.75.
THREE_QUARTERS = ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])


@pytest.mark.parametrize(
    ("labels", "scores", "reference", "max_drop", "status", "observed"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.80, 0.05, "no_decay", 1.0),  # better than before
        (*THREE_QUARTERS, 0.78, 0.05, "no_decay", 0.75),  # within the allowed drop
        (*THREE_QUARTERS, 0.80, 0.05, "no_decay", 0.75),  # exactly the allowed drop
        (*THREE_QUARTERS, 0.90, 0.05, "decay", 0.75),
        ([1, 1, 1], [0.2, 0.5, 0.9], 0.80, 0.05, "not_enough_data", None),  # one class
        ([], [], 0.80, 0.05, "not_enough_data", None),
    ],
)
def test_performance_decay(
    labels: list[int],
    scores: list[float],
    reference: float,
    max_drop: float,
    status: str,
    observed: float | None,
) -> None:
    result = performance_decay(labels, scores, reference, max_drop)
    assert result.status == status
    assert result.decayed is (status == "decay")
    assert result.observed_roc_auc == (None if observed is None else pytest.approx(observed))
    if observed is not None:
        assert result.drop == pytest.approx(reference - observed)
    assert json.loads(json.dumps(result.to_payload()))["status"] == status


def test_performance_decay_needs_min_rows_and_matching_lengths() -> None:
    assert performance_decay(*THREE_QUARTERS, 0.9, 0.05, min_rows=5).status == "not_enough_data"
    with pytest.raises(ValueError, match="4 labels but 3 scores"):
        performance_decay([0, 0, 1, 1], [0.1, 0.2, 0.3], 0.9, 0.05)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "earliest", "latest", "days"),
    [
        ("2026-06-23 23:59", "2026-06-30 23:59", "2026-04-08", "2026-06-30", 7),
        ("2026-06-23 23:59", "2026-06-30 23:59", "2026-04-08", "2026-06-27", 4),  # data end
        ("2027-01-01", "2027-01-08", "2026-04-08", "2026-06-30", 0),  # after the data
        ("2026-01-01", "2026-01-08", "2026-04-08", "2026-06-30", 0),  # before the data
        ("2026-06-23", "2026-06-24", "2026-04-08", "2026-06-30", 2),  # both ends midnight
    ],
)
def test_window_midnights(start: str, end: str, earliest: str, latest: str, days: int) -> None:
    found = window_midnights(utc(start), utc(end), utc(earliest), utc(latest))
    assert len(found) == days
    assert all(day == day.normalize() and str(day.tz) == "UTC" for day in found)
    assert window_midnights(utc(start), utc(end), None, None) == []


def test_entity_frame_has_each_known_entity_once_per_day() -> None:
    days = [pd.Timestamp("2026-06-29", tz="UTC"), pd.Timestamp("2026-06-30", tz="UTC")]
    first_seen = pd.Series(
        pd.to_datetime(["2026-01-01", "2026-06-30", "2026-07-15"], utc=True), index=[1, 2, 3]
    )
    entities = entity_frame(first_seen, days, "customer_id", "event_timestamp")
    assert list(entities.itertuples(index=False, name=None)) == [
        (1, days[0]),
        (1, days[1]),
        (2, days[1]),
    ]
    assert str(entities["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert entities["customer_id"].dtype == "int64"
    empty = entity_frame(first_seen, [], "customer_id", "event_timestamp")
    assert empty.empty
    assert list(empty.columns) == ["customer_id", "event_timestamp"]


def test_segments_split_both_sides_by_the_current_values() -> None:
    reference, current = frame(900, 1), frame(600, 2, mix=(0.5, 0.5, 0.0))
    split = split_by_segment(reference, current, "plan")
    assert list(split) == ["basic", "standard"]  # sorted, only what the current data holds
    for plan, (reference_rows, current_rows) in split.items():
        assert set(reference_rows["plan"]) == set(current_rows["plan"]) == {plan}
        assert len(reference_rows) == (reference["plan"] == plan).sum()
    with pytest.raises(DriftInputError, match="MLOPS_MONITORING__SEGMENT_COLUMN"):
        split_by_segment(reference, current, "region")


def test_a_segment_drifts_on_its_own_columns_and_carries_no_report() -> None:
    reference = frame(2000, 1)
    current = pd.concat([frame(1000, 2), frame(1000, 3, amount_shift=8.0).assign(plan="premium")])
    split = split_by_segment(reference, current, "plan")
    results = {
        plan: check_segment_drift(*frames, COLUMNS, CATEGORICAL, "plan", settings(min_rows=50))
        for plan, frames in split.items()
    }
    assert results["premium"].drifted_columns == ("amount",)
    assert results["basic"].drifted_columns == ()
    assert all(set(result.scores) == {"amount", "visits"} for result in results.values())
    assert all(result.report is None for result in results.values())


def test_a_report_without_a_verdict_or_a_drifted_share_is_refused() -> None:
    from mlops_flows.adapters.drift import _read_snapshot

    drift = {"type": "evidently:metric_v2:ValueDrift", "column": "a", "method": "psi"}
    metric = {"id": "m1", "config": drift | {"threshold": 0.1}, "value": 0.3}
    with pytest.raises(DriftReportError, match="no drift verdict for column 'a'"):
        _read_snapshot({"metrics": [metric]}, ["a"])
    with pytest.raises(DriftReportError, match="lacks"):
        _read_snapshot({"metrics": []}, ["a"])
