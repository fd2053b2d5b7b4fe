"""The drift event's fields, as the trigger templates them, are checked before retraining."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mlops_flows.flows.retrain_flow import DriftEventError, parse_drift_event

GOOD: dict[str, Any] = {
    "event_id": "5f0c0d5e-0000-4000-8000-000000000000",
    "model_name": "churn",
    "window_end": "2026-06-30T23:59:00+00:00",
    "drift_share": 0.4,
    "reason": "performance decay",
}


def test_a_complete_event_is_accepted() -> None:
    event = parse_drift_event(GOOD, "churn")
    assert event.window_end == datetime(2026, 6, 30, 23, 59, tzinfo=UTC)
    assert event.drift_share == 0.4


@pytest.mark.parametrize(
    ("field", "value"),
    [("window_end", ""), ("window_end", "yesterday"), ("model_name", ""), ("event_id", "")],
)
def test_a_missing_or_bad_field_is_named(field: str, value: str) -> None:
    with pytest.raises(DriftEventError, match=rf"field '{field}' is missing or invalid"):
        parse_drift_event({**GOOD, field: value}, "churn")


def test_an_event_about_another_model_is_refused() -> None:
    with pytest.raises(DriftEventError, match=r"'model_name' names 'fraud'.*retrains 'churn'"):
        parse_drift_event({**GOOD, "model_name": "fraud"}, "churn")
