"""The training set's MLflow schema from a sample equals MLflow's own, value by value; where a
store keeps its artifacts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_flows.adapters.tracking import local_artifact_root, sampled_schema, training_dataset


def _training_set(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows, dtype="int64"),
            "event_timestamp": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"),
            "churned": rng.integers(0, 2, rows),
            "plan": rng.choice(["basic", "standard", "premium"], rows).astype(object),
            "monthly_charge": rng.normal(50, 10, rows),
        }
    )


def _mlflow_schema(frame: pd.DataFrame) -> object:
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    return PandasDataset(frame, source=LocalArtifactDatasetSource("/x"), digest="d").schema


def _with_late_null(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[len(frame) - 1, "monthly_charge"] = np.nan
    return frame


def _with_late_number_in_text(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[len(frame) - 1, "plan"] = 7
    return frame


def test_a_clean_training_set_is_read_from_a_sample() -> None:
    frame = _training_set(3000)
    assert sampled_schema(frame) == _mlflow_schema(frame)


@pytest.mark.parametrize("change", [_with_late_null, _with_late_number_in_text])
def test_values_the_sample_may_miss_leave_the_schema_to_mlflow(change: object) -> None:
    frame = change(_training_set(3000))  # type: ignore[operator]
    assert sampled_schema(frame) is None


@pytest.mark.parametrize("change", [lambda f: f, _with_late_null, _with_late_number_in_text])
def test_the_dataset_carries_mlflows_schema_and_the_given_digest(change: object) -> None:
    frame = change(_training_set(1500))  # type: ignore[operator]
    dataset = training_dataset(frame, "/data/labels.parquet", "churned", "a" * 64)
    assert dataset.schema == _mlflow_schema(frame)
    assert dataset.digest == "a" * 36
    assert dataset.to_dict()["name"] == "training_set"


@pytest.mark.parametrize(
    ("tracking_uri", "expected"),
    [
        ("sqlite:////srv/ws/mlflow/mlflow.db", "file:///srv/ws/mlflow/artifacts"),
        ("http://127.0.0.1:5000", None),  # a server keeps its own artifact root
        ("postgresql://mlflow@db/mlflow", None),
    ],
)
def test_only_a_sqlite_store_keeps_its_artifacts_beside_the_database(
    tracking_uri: str, expected: str | None
) -> None:
    assert local_artifact_root(tracking_uri) == expected
