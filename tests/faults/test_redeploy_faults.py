"""A model artifact that fails to load, and an online store missing rows, against the real
scoring service, registry, Feast stores and the redeploy flow.

One workspace for the module, with data ending today (redeploy materializes up to now) and two
versions: v1, then v2. Each test sets the champion it needs and puts every byte and row it
damaged back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_flows.adapters import events, features, online_store
from mlops_flows.examples.churn.simulate import SimulationSpec
from mlops_flows.logic.redeploy import sample_customers
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import versions as registry
from mlops_flows.serving.contract import HEALTH, PREDICT, RELOAD, PredictionLog, reload_token
from mlops_flows.serving.runner import running_service
from mlops_flows.settings import Settings
from tests.support import (
    SMALL,
    assert_one_line_failure,
    promote_for_set_up,
    run_mlops,
    seed_workspace,
    use_workspace,
    wait_for_event,
)

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("prefect_server")]

V1, V2 = "1", "2"
CUSTOMERS = list(range(1000, 1600))  # the customers of the SMALL simulation
SMOKE_SAMPLE = sample_customers(CUSTOMERS, 20, 42)  # RedeployParameters' defaults


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """Fresh data, v1 trained a week before v2, the online store loaded up to now."""
    from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model

    home = tmp_path_factory.mktemp("redeploy-faults") / "workspace"
    spec = SimulationSpec(**{**vars(SMALL), "end": datetime.now(UTC).date()})
    with pytest.MonkeyPatch.context() as patch:
        settings = use_workspace(patch, home)
        data = seed_workspace(settings, spec)
        last_label = data.labels["event_timestamp"].max().to_pydatetime()
        first = train_churn_model(
            TrainingParameters(as_of=last_label - timedelta(days=7), reason="test-first")
        )
        second = train_churn_model(TrainingParameters(reason="test-second"))
        online_store.materialize(
            features.open_store(settings.features.repo_path), datetime.now(UTC)
        )
    assert (first.version, second.version) == (V1, V2)
    assert second.status == "champion", second.gate_summary
    return home


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, home: Path) -> Settings:
    return use_workspace(monkeypatch, home)


def _client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(settings.tracking_uri)


def make_champion(settings: Settings, version: str) -> None:
    client = _client(settings)
    if registry.champion_version(client, "churn") != version:
        promote_for_set_up(client, "churn", version)


def champion(settings: Settings) -> str | None:
    return registry.champion_version(_client(settings), "churn")


def tags(settings: Settings, version: str) -> dict[str, str]:
    return registry.read_facts(_client(settings), "churn", version)


def served(url: str) -> str:
    return str(httpx.get(f"{url}{HEALTH}", timeout=10).json()["model_version"])


def skops_file(settings: Settings, version: str) -> Path:
    """The model file of a version in the workspace's artifact store."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    uri = _client(settings).get_model_version_download_uri("churn", version)
    path = Path(local_file_uri_to_path(uri)) / "model.skops"
    assert path.is_file(), f"no skops file at {path}"
    return path


@pytest.fixture
def corrupt_model(settings: Settings) -> Iterator[Callable[[str], Path]]:
    """Cut a version's skops file in half; the exact bytes are restored afterwards."""
    saved: dict[Path, bytes] = {}

    def apply(version: str) -> Path:
        path = skops_file(settings, version)
        saved[path] = path.read_bytes()
        path.write_bytes(saved[path][: len(saved[path]) // 2])
        return path

    yield apply
    for path, data in saved.items():
        path.write_bytes(data)


def test_a_reload_onto_a_corrupt_champion_keeps_serving_the_loaded_model(
    settings: Settings, corrupt_model: Callable[[str], Path]
) -> None:
    make_champion(settings, V2)
    with running_service(settings) as url:
        corrupt_model(V2)
        authorization = {"Authorization": f"Bearer {reload_token(settings)}"}
        response = httpx.post(f"{url}{RELOAD}", headers=authorization, timeout=60)
        assert response.status_code == 409, response.text
        detail = response.json()["detail"]
        # The bytes are not the registered ones: refused before skops reads them.
        assert "Model churn v2 changed since it was registered" in detail
        assert detail.endswith("Still serving v2.")
        scored = httpx.post(f"{url}{PREDICT}", json={"customer_ids": [1000]}, timeout=30)
        assert scored.status_code == 200, scored.text
        assert scored.json()["model_version"] == V2
        assert served(url) == V2
    assert champion(settings) == V2


def test_redeploy_of_a_version_that_fails_to_load_rolls_back(
    settings: Settings, corrupt_model: Callable[[str], Path]
) -> None:
    make_champion(settings, V1)
    with running_service(settings) as url:
        assert served(url) == V1
        promote_for_set_up(_client(settings), "churn", V2, "gates passed")
        corrupt_model(V2)
        result = run_mlops("redeploy", V2, "--previous", V1)
        assert_one_line_failure(result, r"^error in redeploy flow: ")
        message = result.output
        print(f"\nredeploy of an unloadable version: {message}")
        assert "answered 409: " in message
        assert "Model churn v2 changed since it was registered" in message
        assert "champion moved back from v2 to v1; the service now serves v1" in message
        assert served(url) == V1
    assert champion(settings) == V1
    failed = tags(settings, V2)
    assert failed["status"] == "rolled_back"
    assert "changed since it was registered" in failed["status_reason"]
    assert tags(settings, V1)["status"] == "champion"


@pytest.fixture
def damage_online_rows(settings: Settings) -> Iterator[Callable[..., int]]:
    """Delete a view's online rows of some customers, store a null for one feature of theirs,
    or multiply one numeric feature of theirs by ten; put back exactly those rows afterwards."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    database = Workspace(settings.home_resolved).feast / "online_store.db"
    saved: list[tuple[str, list[bytes], list[tuple[Any, ...]]]] = []

    def key(customer: int) -> bytes:
        entity = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=customer)])
        return serialize_entity_key(entity, entity_key_serialization_version=3)

    def tenfold(stored: bytes) -> bytes:
        value = Value.FromString(stored)
        kind = value.WhichOneof("val")
        setattr(value, kind, getattr(value, kind) * 10 + 10)
        return value.SerializeToString()

    def apply(
        view: str,
        customers: list[int],
        null_feature: str | None = None,
        changed_feature: str | None = None,
    ) -> int:
        table = f"churn_{view}"
        keys = [key(customer) for customer in customers]
        where = f"entity_key IN ({','.join('?' * len(keys))})"
        with sqlite3.connect(database) as connection:
            rows = connection.execute(f"SELECT * FROM {table} WHERE {where}", keys).fetchall()  # noqa: S608 - test names
            if null_feature is not None:  # what Feast stores for a null source value
                connection.execute(
                    f"UPDATE {table} SET value = ? WHERE feature_name = ? AND {where}",  # noqa: S608
                    [Value().SerializeToString(), null_feature, *keys],
                )
            elif changed_feature is not None:
                changed = connection.execute(
                    f"SELECT entity_key, value FROM {table} WHERE feature_name = ? AND {where}",  # noqa: S608
                    [changed_feature, *keys],
                ).fetchall()
                connection.executemany(
                    f"UPDATE {table} SET value = ? WHERE feature_name = ? AND entity_key = ?",  # noqa: S608
                    [(tenfold(value), changed_feature, entity) for entity, value in changed],
                )
            else:
                connection.execute(f"DELETE FROM {table} WHERE {where}", keys)  # noqa: S608
        saved.append((table, keys, rows))
        return len(rows)

    yield apply
    with sqlite3.connect(database) as connection:
        for table, keys, rows in saved:
            where = f"entity_key IN ({','.join('?' * len(keys))})"
            connection.execute(f"DELETE FROM {table} WHERE {where}", keys)  # noqa: S608
            if rows:
                marks = ",".join("?" * len(rows[0]))
                connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608


def test_missing_online_rows_are_a_clear_404_never_a_5xx(
    settings: Settings, damage_online_rows: Callable[..., int]
) -> None:
    make_champion(settings, V2)
    gone, partial, null, intact = 1001, 1002, 1004, 1003
    assert damage_online_rows("customer_profile", [gone]) > 0
    assert damage_online_rows("customer_activity", [gone, partial]) > 0
    assert damage_online_rows("customer_activity", [null], null_feature="sessions_7d") > 0
    started = datetime.now(UTC)
    with running_service(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        answers = {
            customer: http.post(PREDICT, json={"customer_ids": [customer]})
            for customer in (gone, partial, null, intact)
        }
        both = http.post(PREDICT, json={"customer_ids": [intact, partial]})
        assert http.get(HEALTH).status_code == 200

    assert answers[intact].status_code == 200, answers[intact].text
    assert answers[gone].status_code == 404
    assert f"No online features for customer id(s) {gone}" in answers[gone].json()["detail"]
    assert answers[partial].status_code == 404
    detail = answers[partial].json()["detail"]
    assert f"Online features of customer id(s) {partial} are incomplete (missing: " in detail
    assert "sessions_7d" in detail
    assert "plan" not in detail  # the profile is there
    assert "not in the online store: " in detail
    assert "null in the feature source" not in detail
    assert answers[null].status_code == 404
    detail = answers[null].json()["detail"]
    assert "(missing: sessions_7d, minutes_per_session)" in detail  # the second is computed
    assert "null in the feature source: sessions_7d" in detail
    assert "not in the online store" not in detail
    assert both.status_code == 404
    assert str(intact) not in both.json()["detail"]
    # Each refused id is logged without a score, naming what was missing; monitoring counts them.
    logged = PredictionLog(Workspace(settings.home_resolved).predictions).read(
        started, datetime.now(UTC)
    )
    refused = [
        (r["customer_id"], set(r["missing_features"]))
        for r in logged
        if r["churn_probability"] is None
    ]
    assert sorted(customer for customer, _ in refused) == [partial, partial, null]
    assert all("sessions_7d" in missing and "plan" not in missing for _, missing in refused)
    assert dict(refused)[null] == {"sessions_7d", "minutes_per_session"}
    assert [r["customer_id"] for r in logged if r["churn_probability"] is not None] == [intact]


def test_redeploy_detects_missing_online_rows_and_rolls_back(
    settings: Settings, damage_online_rows: Callable[..., int]
) -> None:
    make_champion(settings, V1)
    with running_service(settings) as url:
        promote_for_set_up(_client(settings), "churn", V2, "gates passed")
        # A partial materialization: the activity view lost the smoke sample's rows.
        assert damage_online_rows("customer_activity", SMOKE_SAMPLE[:5]) > 0
        result = run_mlops("redeploy", V2, "--previous", V1)
        assert_one_line_failure(result, r"^error in redeploy flow: ")
        message = result.output
        print(f"\nredeploy with missing online rows: {message}")
        assert "answered 404" in message
        assert "are incomplete (missing: " in message
        assert "champion moved back from v2 to v1; the service now serves v1" in message
        assert served(url) == V1
    assert champion(settings) == V1
    assert tags(settings, V2)["status"] == "rolled_back"


def test_online_features_that_disagree_with_offline_fail_the_skew_check_and_roll_back(
    settings: Settings, damage_online_rows: Callable[..., int]
) -> None:
    make_champion(settings, V1)
    started = datetime.now(UTC)
    with running_service(settings) as url:
        promote_for_set_up(_client(settings), "churn", V2, "gates passed")
        # The online store holds other values than the offline source for the smoke sample.
        changed = damage_online_rows(
            "customer_activity", SMOKE_SAMPLE, changed_feature="days_since_last_login"
        )
        assert changed > 0
        result = run_mlops("redeploy", V2, "--previous", V1)
        assert_one_line_failure(result, r"^error in redeploy flow: ")
        message = result.output
        assert "online and offline scores differ for " in message
        assert "champion moved back from v2 to v1; the service now serves v1" in message
        assert served(url) == V1
    assert champion(settings) == V1
    failed, restored = tags(settings, V2), tags(settings, V1)
    assert failed["status"] == "rolled_back"
    assert "online and offline scores differ" in failed["status_reason"]
    assert failed["rolled_back_by"].startswith("redeploy-rollback:")
    assert (restored["status"], restored["promoted_by"]) == ("champion", failed["rolled_back_by"])
    (event,) = [
        e
        for e in wait_for_event(events.MODEL_ROLLED_BACK, since=started)
        if e.payload.get("version") == V2
    ]
    assert event.resource.id == "mlops.model.churn"
    assert event.payload["restored_version"] == V1
    assert "online and offline scores differ" in event.payload["reason"]
