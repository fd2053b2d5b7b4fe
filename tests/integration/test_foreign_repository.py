"""A Feast repository this project did not write, used as Feast itself would use it.

Its file source names a path relative to the repository (`data/readings.parquet`), as Feast's
own templates do, and commands run from another folder; an on-demand view computes a feature
from a request-time value, which the label file carries.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops_flows.adapters import features, online_store
from mlops_flows.logic.keys import TrainingSetKeys

pytestmark = pytest.mark.integration

STORE_YAML = """\
project: foreign
provider: local
registry: registry.db
online_store:
  type: sqlite
  path: online_store.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""

DEFINITIONS = """\
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

meter = Entity(name="meter", join_keys=["meter_id"], value_type=ValueType.INT64)
readings = FileSource(name="readings_source", path="data/readings.parquet", timestamp_field="ts")
readings_view = FeatureView(
    name="readings",
    entities=[meter],
    ttl=timedelta(days=3),
    schema=[Field(name="load_kw", dtype=Float64)],
    source=readings,
    online=True,
)
weather = RequestSource(name="weather", schema=[Field(name="temperature", dtype=Float64)])


@on_demand_feature_view(
    sources=[readings_view, weather], schema=[Field(name="load_per_degree", dtype=Float64)]
)
def per_degree(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"load_per_degree": inputs["load_kw"] / inputs["temperature"]})


load_model = FeatureService(name="load_model_v1", features=[readings_view, per_degree])
"""

END = datetime(2026, 6, 30, tzinfo=UTC)
KEYS = TrainingSetKeys(entity_key="meter_id", timestamp="ts", label="overload")


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository, its data inside it, and the current folder somewhere else."""
    repo = tmp_path / "their-repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(STORE_YAML)
    (repo / "definitions.py").write_text(DEFINITIONS)
    stamps = pd.date_range(END - timedelta(days=4), END, freq="D")
    pd.DataFrame(
        {
            "meter_id": [meter for meter in (1, 2) for _ in stamps],
            "ts": [stamp for _ in (1, 2) for stamp in stamps],
            "load_kw": [float(i) for i in range(2 * len(stamps))],
        }
    ).to_parquet(repo / "data" / "readings.parquet", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("FEAST_USAGE", "False")
    return repo


def test_a_source_path_relative_to_the_repository_is_read_from_any_folder(
    repository: Path,
) -> None:
    store = features.open_store(repository)
    try:
        features.apply_repository(store, repository)
        service = features.get_feature_service(store, "load_model_v1")
        features.check_sources(store, service)  # once: "reads data/readings.parquet, which
        # does not exist", resolved against the current folder

        labels = pd.DataFrame(
            {"meter_id": [1, 2], "ts": [END, END], "overload": [0, 1], "temperature": [2.0, 3.0]}
        ).astype({"ts": "datetime64[ns, UTC]"})
        frame = features.build_training_set(store, service, labels, KEYS).sort_values("meter_id")
        assert frame["load_kw"].tolist() == [4.0, 9.0]
        assert frame["load_per_degree"].tolist() == [2.0, 3.0]
        assert "temperature" not in frame  # it fed the on-demand view; the model takes its output

        with pytest.raises(features.LabelsError, match=r"request-time value\(s\) temperature"):
            features.build_training_set(store, service, labels.drop(columns="temperature"), KEYS)

        assert online_store.materialize(store, END + timedelta(hours=1)) == []
        online = store.get_online_features(
            features=["readings:load_kw"], entity_rows=[{"meter_id": 2}]
        ).to_dict()
        assert online["load_kw"] == [9.0]
    finally:
        features.close_store(store)
