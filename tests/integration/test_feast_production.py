"""Feast on the production file: SQL registry on PostgreSQL, online store on Redis, DuckDB."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_flows.adapters import features, online_store
from mlops_flows.cli.app import app
from mlops_flows.examples.churn.simulate import PROFILE_FILE, simulate
from mlops_flows.ops import databases
from mlops_flows.ops.workspace import Workspace
from tests.services import ProductionResources, require_services
from tests.support import END_OF_DATA, SMALL

pytestmark = pytest.mark.integration
SERVICE = "churn_model_v1"


@pytest.fixture
def resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProductionResources]:
    """A production profile on private databases and a private Feast project."""
    found = ProductionResources.create(tmp_path / "workspace")
    settings = found.settings()
    require_services(settings)
    for name, value in settings.library_environment().items():
        monkeypatch.setenv(name, value)  # what the entry point exports
    try:
        databases.ensure_databases(settings)
        yield found
    finally:
        found.remove()


def test_apply_materialize_and_read_online(resources: ProductionResources) -> None:
    settings = resources.settings()
    data = Workspace(settings.home_resolved).ensure().data
    simulate(SMALL).write(data)
    repo = settings.features.repo_path

    store = features.open_store(repo)  # the file Feast picks from FEAST_FS_YAML_FILE_PATH
    assert store.config.registry.registry_type == "sql"
    assert store.config.online_store.type == "redis"
    assert store.config.offline_store.type == "duckdb"
    assert store.project == resources.project
    features.apply_repository(store, repo)
    online_store.materialize(store, END_OF_DATA)

    # Another process's view: a new store reads the definitions from PostgreSQL.
    fresh = features.open_store(repo, settings.feature_store_yaml)
    service = features.get_feature_service(fresh, SERVICE)
    customers = [1000, 1001, 1002]
    online = fresh.get_online_features(
        features=service, entity_rows=[{"customer_id": c} for c in customers]
    ).to_df()

    profile = pd.read_parquet(data / PROFILE_FILE)
    profile = profile[profile["event_timestamp"] <= END_OF_DATA]
    latest = profile.sort_values("event_timestamp").groupby("customer_id").last()
    assert online["plan"].tolist() == latest.loc[customers, "plan"].tolist()
    assert online["sessions_7d"].notna().all()
    assert online["minutes_per_session"].notna().all()  # the on-demand view, computed online

    with databases.connect(settings, settings.postgres.database("feast")) as connection:
        rows = connection.execute(
            "SELECT feature_service_name FROM feature_services WHERE project_id = %s",
            (resources.project,),
        ).fetchall()
    assert rows == [(SERVICE,)]

    import redis

    client = redis.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        keys = list(client.scan_iter(match=f"*{resources.project}", count=1000))
        assert len(keys) == SMALL.customers
        assert online_store.materialize(store, END_OF_DATA + timedelta(hours=1)) == []

        # What a Redis restarted without persistence leaves: nothing. The next incremental
        # run would load only the last hour; the read-back sees the loss, reloads, and the
        # CLI says so.
        client.delete(*keys)
        until = (END_OF_DATA + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
        result = CliRunner().invoke(
            app, ["features", "materialize", "--end", until], env=resources.environment()
        )
        assert result.exit_code == 0, result.output
        told = " ".join(result.output.split())
        lost = re.search(r"the online store had lost values of ([\w, ]+) \(", told)
        assert lost, told
        assert sorted(lost.group(1).split(", ")) == ["customer_activity", "customer_profile"]
        assert len(list(client.scan_iter(match=f"*{resources.project}"))) == SMALL.customers
    finally:
        client.close()
    for opened in (store, fresh):  # Feast never closes its registry's connection pool
        opened.registry.write_engine.dispose()
        opened.registry.read_engine.dispose()
