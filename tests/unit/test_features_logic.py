"""Unit tests of the Feast-free parts of mlops_flows.adapters.features: labels, windows,
digests, repo check."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_flows.adapters.features import (
    FeatureRepoError,
    LabelsError,
    definition_digest,
    entity_rows_digest,
    frame_digest,
    open_store,
    read_labels,
    select_window,
)
from mlops_flows.logic.keys import TrainingSetKeys
from tests.support import unset

KEYS = TrainingSetKeys(entity_key="customer_id", timestamp="event_timestamp", label="churned")
DAYS = pd.date_range("2026-06-01 06:00", periods=5, freq="7D", tz="UTC")  # 1, 8, 15, 22, 29 June


@pytest.fixture
def labels() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1001, 1002, 1003, 1004, 1005],
            "event_timestamp": DAYS,
            "churned": [0, 1, 0, 1, 0],
        }
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected_ids"),
    [
        ("2026-06-08 06:00", "2026-06-22 06:00", [1002, 1003, 1004]),  # both bounds included
        ("2026-06-08 06:01", "2026-06-22 05:59", [1003]),
        ("2026-06-01 06:00", "2026-06-01 06:00", [1001]),
        ("2026-05-01 00:00", "2026-07-31 00:00", [1001, 1002, 1003, 1004, 1005]),
    ],
)
def test_select_window_bounds_are_inclusive(
    labels: pd.DataFrame, start: str, end: str, expected_ids: list[int]
) -> None:
    window = select_window(labels, KEYS, utc(start), utc(end))
    assert window["customer_id"].tolist() == expected_ids
    assert window.index.tolist() == list(range(len(expected_ids)))


def test_select_window_error_names_the_span_in_the_file(labels: pd.DataFrame) -> None:
    with pytest.raises(LabelsError) as raised:
        select_window(labels, KEYS, utc("2026-07-01 00:00"), utc("2026-07-31 00:00"))
    message = str(raised.value)
    assert "between 2026-07-01 00:00 and 2026-07-31 00:00" in message
    assert "2026-06-01 06:00:00+00:00 to 2026-06-29 06:00:00+00:00" in message


def test_select_window_error_on_an_empty_label_set(labels: pd.DataFrame) -> None:
    with pytest.raises(LabelsError, match="no rows at all"):
        select_window(labels.iloc[0:0], KEYS, utc("2026-06-01 00:00"), utc("2026-06-30 00:00"))


def test_read_labels_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.parquet"
    with pytest.raises(LabelsError, match=re.escape(f"No label file at {path}")):
        read_labels(path, KEYS)


def test_read_labels_names_the_missing_columns(tmp_path: Path, labels: pd.DataFrame) -> None:
    path = tmp_path / "labels.parquet"
    labels.drop(columns=["churned", "event_timestamp"]).to_parquet(path)
    with pytest.raises(LabelsError, match=r"lacks column\(s\) event_timestamp, churned"):
        read_labels(path, KEYS)


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (pd.Series(pd.to_datetime(["2026-06-01 06:00"])), "2026-06-01 06:00"),  # naive: UTC
        (pd.Series(["2026-06-01T06:00:00Z"]), "2026-06-01 06:00"),
        (pd.Series(["2026-06-01T08:00:00+02:00"]), "2026-06-01 06:00"),
        (
            pd.Series(pd.to_datetime(["2026-06-01 08:00"]).tz_localize("Europe/Berlin")),
            "2026-06-01 06:00",
        ),
    ],
)
def test_read_labels_parses_timestamps_to_utc(
    tmp_path: Path, stamps: pd.Series, expected: str
) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"customer_id": [1], "event_timestamp": stamps, "churned": [1]}).to_parquet(path)

    parsed = read_labels(path, KEYS)[KEYS.timestamp]

    assert str(parsed.dt.tz) == "UTC"
    assert parsed.iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_frame_digest_is_stable(labels: pd.DataFrame) -> None:
    assert frame_digest(labels) == frame_digest(labels.copy())
    assert frame_digest(labels) == frame_digest(labels.set_index("customer_id").reset_index())
    assert len(frame_digest(labels)) == 64


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: f.assign(churned=[0, 1, 0, 1, 1]), id="one value"),
        pytest.param(lambda f: f.astype({"churned": "float64"}), id="dtype"),
        pytest.param(lambda f: f.iloc[::-1].reset_index(drop=True), id="row order"),
        pytest.param(lambda f: f.rename(columns={"churned": "left"}), id="column name"),
        pytest.param(lambda f: f.iloc[:-1], id="one row fewer"),
    ],
)
def test_frame_digest_changes_with_the_frame(labels: pd.DataFrame, change: Any) -> None:
    assert frame_digest(change(labels)) != frame_digest(labels)


def test_entity_rows_digest_ignores_row_order_resolution_and_feature_columns(
    labels: pd.DataFrame,
) -> None:
    training_set = labels.iloc[::-1].assign(plan="basic", sessions_7d=3)
    training_set["event_timestamp"] = training_set["event_timestamp"].astype("datetime64[us, UTC]")
    assert entity_rows_digest(training_set, KEYS) == entity_rows_digest(labels, KEYS)


@pytest.mark.parametrize("column", ["customer_id", "event_timestamp", "churned"])
def test_entity_rows_digest_changes_with_one_label_row(labels: pd.DataFrame, column: str) -> None:
    changed = labels.copy()
    changed.loc[2, column] = {
        "customer_id": 9999,
        "event_timestamp": DAYS[2] + pd.Timedelta(hours=1),
        "churned": 1,
    }[column]
    assert entity_rows_digest(changed, KEYS) != entity_rows_digest(labels, KEYS)


def test_definition_digest_ignores_key_order() -> None:
    first = {"name": "svc", "views": [{"name": "v", "ttl_seconds": 3600, "entities": ["c"]}]}
    second = {"views": [{"entities": ["c"], "ttl_seconds": 3600, "name": "v"}], "name": "svc"}
    assert definition_digest(first) == definition_digest(second)


def test_definition_digest_changes_with_content() -> None:
    base = {"name": "svc", "views": [{"name": "v", "ttl_seconds": 3600}]}
    changed = {"name": "svc", "views": [{"name": "v", "ttl_seconds": 7200}]}
    assert definition_digest(base) != definition_digest(changed)


def test_open_store_without_feature_store_yaml_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset(monkeypatch, "FEAST_FS_YAML_FILE_PATH")  # Feast's own switch would pick another file
    with pytest.raises(FeatureRepoError) as raised:
        open_store(tmp_path)
    assert str(tmp_path / "feature_store.yaml") in str(raised.value)
    assert "MLOPS_FEATURES__REPO_PATH" in str(raised.value)


def test_open_store_names_unset_variables_of_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset(monkeypatch, "FEAST_REDIS_CONNECTION_STRING")
    config = tmp_path / "feature_store.yaml"
    config.write_text(
        "project: p\nonline_store:\n  connection_string: ${FEAST_REDIS_CONNECTION_STRING}\n"
    )
    with pytest.raises(FeatureRepoError, match="FEAST_REDIS_CONNECTION_STRING"):
        open_store(tmp_path, config)
