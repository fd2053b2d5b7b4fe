"""The scoring service over real HTTP: Feast online features, the MLflow champion, reloads."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from mlops_flows.adapters import features, online_store
from mlops_flows.logic import training
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import history
from mlops_flows.registry import versions as registry
from mlops_flows.registry.versions import NoChampionError
from mlops_flows.serving import scoring
from mlops_flows.serving.app import EmptyTokenError, ScoringService
from mlops_flows.serving.contract import (
    HEALTH,
    PREDICT,
    RELOAD,
    Health,
    PredictionLog,
    PredictResponse,
    ReloadResponse,
    reload_token,
)
from mlops_flows.serving.runner import ServiceStartError, running_service
from mlops_flows.settings import Settings
from tests.e2e.stack import free_port, wait_until
from tests.support import CHECKOUT, END_OF_DATA, promote_for_set_up, snapshot, use_workspace

# `mlops serve` as a subprocess covers what no in-process test reaches (its signal handling).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.traced_subprocesses,
]

KNOWN_IDS = range(1000, 1600)  # the customers of the SMALL simulation
RECORD_KEYS = {
    "scored_at",
    "customer_id",
    "model_name",
    "model_version",
    "feature_service",
    "churn_probability",
    "features",
    "unseen_categories",
    "missing_features",
}


@pytest.fixture(scope="module")
def settings(
    champion_home: tuple[Path, Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A private copy of the champion workspace, its online store loaded up to END_OF_DATA."""
    # Materializing writes the Feast registry and online store, and the watcher test moves
    # `champion`: on a copy, the shared workspace other modules read stays as it was.
    shared_home = champion_home[0]
    with pytest.MonkeyPatch.context() as patch:
        shared = use_workspace(patch, shared_home)
        before = snapshot(shared)
        home = tmp_path_factory.mktemp("serving") / "workspace"
        shutil.copytree(shared_home, home)
        patch.setenv("MLOPS_SERVING__ALIAS_POLL_SECONDS", "0.2")
        copy = use_workspace(patch, home)
        online_store.materialize(features.open_store(copy.features.repo_path), END_OF_DATA)
        yield copy
    assert snapshot(shared) == before, "the serving tests changed the shared champion workspace"


@pytest.fixture(scope="module")
def service(settings: Settings) -> Iterator[str]:
    """The service's base URL, started once for the module."""
    with running_service(settings) as url:
        yield url


@pytest.fixture
def http(service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, timeout=30.0) as client:
        yield client


def _champion(settings: Settings) -> str:
    from mlflow import MlflowClient

    version = registry.champion_version(MlflowClient(settings.tracking_uri), "churn")
    assert version is not None
    return version


def test_health_reports_the_champion_version(http: httpx.Client, settings: Settings) -> None:
    response = http.get(HEALTH)
    assert response.status_code == 200
    assert Health.model_validate(response.json()) == Health(
        status="ok",
        model_name="churn",
        model_version=_champion(settings),
        feature_service="churn_model_v1",
    )


def test_predict_scores_known_customers_and_logs_each_prediction(
    http: httpx.Client, settings: Settings
) -> None:
    ids = [1000, 1234, 1599, 1234]  # duplicates are scored like any id
    since = datetime.now(UTC)
    response = http.post(PREDICT, json={"customer_ids": ids})
    until = datetime.now(UTC)

    assert response.status_code == 200, response.text
    body = PredictResponse.model_validate(response.json())
    assert (body.model_name, body.model_version, body.feature_service) == (
        "churn",
        _champion(settings),
        "churn_model_v1",
    )
    assert [p.customer_id for p in body.predictions] == ids
    assert all(0.0 <= p.churn_probability <= 1.0 for p in body.predictions)
    assert body.predictions[1] == body.predictions[3]

    records = PredictionLog(Workspace(settings.home_resolved).predictions).read(since, until)
    assert [r["customer_id"] for r in records] == ids
    for record, prediction in zip(records, body.predictions, strict=True):
        assert set(record) == RECORD_KEYS
        assert record["churn_probability"] == prediction.churn_probability
        assert record["model_version"] == body.model_version
        assert record["feature_service"] == "churn_model_v1"
        assert datetime.fromisoformat(record["scored_at"]).utcoffset() is not None
        assert set(record["features"]) >= {"plan", "region", "sessions_7d", "minutes_per_session"}
        assert all(value is not None for value in record["features"].values())
        assert record["unseen_categories"] == []


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        pytest.param({"customer_ids": []}, 422, "customer_ids is empty", id="empty"),
        pytest.param({"customer_ids": list(range(1000, 1101))}, 413, "the limit is 100", id="101"),
        pytest.param(
            {"customer_ids": ["a"]},
            422,
            "customer_ids.0: Input should be a valid integer",
            id="string",
        ),
        pytest.param({"customer_ids": ["1000"]}, 422, "valid integer", id="numeric-string"),
        pytest.param(
            {"customer_ids": [1.5]},
            422,
            "customer_ids.0: Input should be a valid integer",
            id="float",
        ),
        pytest.param({"customer_ids": [True]}, 422, "valid integer", id="bool"),
        pytest.param({"customer_ids": 1000}, 422, "valid list", id="not-a-list"),
        pytest.param({}, 422, "customer_ids: Field required", id="missing-field"),
        pytest.param([1000], 422, "valid dictionary", id="bare-list"),
        pytest.param(b"{customer_ids: [1000", 422, "not valid JSON", id="invalid-json"),
        pytest.param({"customer_ids": [2**70]}, 422, "64-bit", id="beyond-int64"),
        pytest.param({"customer_ids": [99999999]}, 404, "99999999", id="unknown-id"),
        pytest.param(
            {"customer_ids": [1000, 99999999, -1]}, 404, "-1, 99999999", id="some-unknown"
        ),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    http: httpx.Client, body: Any, status: int, says: str
) -> None:
    if isinstance(body, bytes):
        response = http.post(PREDICT, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(PREDICT, json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert says in detail


def test_a_body_past_the_limit_is_refused_before_it_is_read(http: httpx.Client) -> None:
    """Three times the limit, declared by Content-Length or sent in chunks without one: 413
    either way, and the service goes on answering. (Small enough for the socket buffers: the
    client writes it all before it reads the answer.)"""
    body = b'{"customer_ids": [' + b"1001, " * 32_000 + b"1001]}"
    headers = {"content-type": "application/json"}
    declared = http.post(PREDICT, content=body, headers=headers)
    pieces = [body[i : i + 16_384] for i in range(0, len(body), 16_384)]
    chunked = http.post(PREDICT, content=iter(pieces), headers=headers)
    assert "content-length" not in chunked.request.headers
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert "larger than 65536 bytes" in response.json()["detail"]
    assert http.post(PREDICT, json={"customer_ids": [1001]}).status_code == 200


def test_unknown_ids_are_named_and_known_ones_not(http: httpx.Client) -> None:
    detail = http.post(PREDICT, json={"customer_ids": [1000, 99999999]}).json()["detail"]
    assert "99999999" in detail
    assert "1000" not in detail


def test_an_unexpected_error_is_a_short_500_and_is_logged(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(self: PredictionLog, records: list[dict[str, Any]]) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(PredictionLog, "append", full_disk)
    with caplog.at_level(logging.ERROR, logger="mlops_flows.serving.app"):
        response = http.post(PREDICT, json={"customer_ids": [1000]})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal error; it is logged by the service."}
    assert any(
        "Unexpected error in POST /predict" in r.getMessage() and r.exc_info for r in caplog.records
    )


def test_reload_needs_the_token(http: httpx.Client, settings: Settings) -> None:
    assert http.post(RELOAD).status_code == 401
    wrong = http.post(RELOAD, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    token = reload_token(settings)
    assert http.post(RELOAD, headers={"Authorization": token}).status_code == 401  # no scheme

    response = http.post(RELOAD, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    champion = _champion(settings)
    assert ReloadResponse.model_validate(response.json()) == ReloadResponse(
        model_version=champion, previous_version=champion
    )


def test_reloads_under_load_fail_no_request(service: str, settings: Settings) -> None:
    failures: list[str] = []
    served = 0
    stop = threading.Event()
    lock = threading.Lock()

    def hammer(seed: int) -> None:
        nonlocal served
        random = np.random.default_rng(seed)
        with httpx.Client(base_url=service, timeout=30.0) as client:
            while not stop.is_set():
                size = 1 if random.random() < 0.5 else int(random.integers(2, 101))
                ids = [int(i) for i in random.choice(KNOWN_IDS, size=size)]
                try:
                    response = client.post(PREDICT, json={"customer_ids": ids})
                    ok = response.status_code == 200 and len(response.json()["predictions"]) == size
                    problem = "" if ok else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    served += 1
                    if problem:
                        failures.append(problem)

    clients = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for client in clients:
        client.start()
    reloads = []
    authorization = {"Authorization": f"Bearer {reload_token(settings)}"}
    # Counted, not timed: three reloads and 20 requests at least, however slow the machine.
    try:
        with httpx.Client(base_url=service, timeout=60.0) as admin:
            deadline = time.monotonic() + 120
            while len(reloads) < 3 or served < 20:
                assert time.monotonic() < deadline, (reloads, served)
                reloads.append(admin.post(RELOAD, headers=authorization).status_code)
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert failures == []
    assert set(reloads) == {200}


def test_online_scores_equal_offline_scores_of_the_same_customers(
    http: httpx.Client, settings: Settings
) -> None:
    """Training/serving skew: the same FeatureService read online and point-in-time offline."""
    import mlflow.sklearn
    from mlflow import MlflowClient

    ids = list(range(1000, 1600, 30))
    assert len(ids) == 20
    response = http.post(PREDICT, json={"customer_ids": ids})
    assert response.status_code == 200, response.text
    online = {p["customer_id"]: p["churn_probability"] for p in response.json()["predictions"]}

    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    entities = pd.DataFrame({"customer_id": ids, "event_timestamp": END_OF_DATA})
    frame = store.get_historical_features(entity_df=entities, features=service).to_df()
    frame = frame.sort_values("customer_id").reset_index(drop=True)  # DuckDB reorders rows
    client = MlflowClient(settings.tracking_uri)
    version = response.json()["model_version"]
    model = mlflow.sklearn.load_model(client.get_model_version_download_uri("churn", version))
    offline = training.predict_scores(model, frame, training.model_feature_names(model))

    assert frame["customer_id"].tolist() == ids
    np.testing.assert_allclose([online[i] for i in ids], offline, rtol=0, atol=1e-9)


def test_the_watcher_serves_the_version_governance_moves_champion_to(
    http: httpx.Client, settings: Settings
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    original = _champion(settings)
    versions = {str(v.version) for v in client.search_model_versions("name='churn'")}
    other = min(versions - {original})
    promote_for_set_up(client, "churn", other)
    try:
        _wait_for_version(http, other, timeout=10.0)  # polls every 0.2 s, loads in about 1 s
    finally:
        promote_for_set_up(client, "churn", original)
        _wait_for_version(http, original, timeout=10.0)


def test_an_alias_moved_around_governance_is_not_served_and_is_reported(
    http: httpx.Client, settings: Settings
) -> None:
    """What a user with EDIT on the registered model can do: move `champion` by hand. The
    service keeps the governed champion, says why in its health and refuses a reload."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    original = _champion(settings)
    versions = {str(v.version) for v in client.search_model_versions("name='churn'")}
    other = min(versions - {original})
    entries = len(history.read(client, "churn"))
    client.set_registered_model_alias("churn", registry.CHAMPION, other)
    try:
        deadline = time.monotonic() + 10
        while (health := http.get(HEALTH).json())["alert"] is None:
            assert time.monotonic() < deadline, "no alert in health within 10 s"
            time.sleep(0.05)
        assert health["model_version"] == original
        assert (
            f"points at v{other}, but the audit history's last champion move made "
            in (health["alert"])
        )
        assert health["alert"].endswith(f"Still serving v{original}.")
        authorization = {"Authorization": f"Bearer {reload_token(settings)}"}
        reloaded = http.post(RELOAD, headers=authorization)
        assert reloaded.status_code == 409, reloaded.text
        assert "moved outside governance" in reloaded.json()["detail"]
        scored = http.post(PREDICT, json={"customer_ids": [1001]})
        assert scored.json()["model_version"] == original
    finally:
        client.set_registered_model_alias("churn", registry.CHAMPION, original)
    deadline = time.monotonic() + 10
    while http.get(HEALTH).json()["alert"] is not None:
        assert time.monotonic() < deadline, "the alert outlived the alias's return"
        time.sleep(0.05)
    assert len(history.read(client, "churn")) == entries  # nothing was recorded for it


def _wait_for_version(http: httpx.Client, version: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while http.get(HEALTH).json()["model_version"] != version:
        assert time.monotonic() < deadline, f"health did not report v{version} in {timeout} s"
        time.sleep(0.05)


def test_the_service_refuses_to_start_without_a_champion(workspace: Settings) -> None:
    with pytest.raises(NoChampionError, match=r"no `champion` version.*`mlops train`"):
        ScoringService(workspace)
    with (
        pytest.raises(ServiceStartError, match="stopped while starting"),
        running_service(workspace),
    ):
        pass


def test_the_service_refuses_an_empty_token(settings: Settings) -> None:
    empty = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"reload_token": SecretStr("")})}
    )
    with pytest.raises(EmptyTokenError, match="reload token is empty"):
        ScoringService(empty)


def test_prediction_records_hold_json_values() -> None:
    categories = {"plan": frozenset({"basic"}), "region": frozenset({"north"})}
    columns = ("plan", "region", "sessions_7d", "minutes_7d")
    model = scoring.ServedModel("churn", "3", None, columns, categories)
    frame = pd.DataFrame(
        {
            "customer_id": np.array([7], dtype="int64"),
            "plan": [None],
            "region": ["south"],  # never seen in training
            "sessions_7d": np.array([4], dtype="int64"),
            "minutes_7d": [float("nan")],
        }
    )
    (record,) = scoring.prediction_records(
        frame,
        np.array([0.25]),
        model,
        "churn_model_v1",
        "customer_id",
        datetime(2026, 7, 1, tzinfo=UTC),
    )
    assert json.loads(json.dumps(record, allow_nan=False)) == {
        "scored_at": "2026-07-01T00:00:00+00:00",
        "customer_id": 7,
        "model_name": "churn",
        "model_version": "3",
        "feature_service": "churn_model_v1",
        "churn_probability": 0.25,
        "features": {"plan": None, "region": "south", "sessions_7d": 4, "minutes_7d": None},
        "unseen_categories": ["region"],
        "missing_features": [],
    }


def test_mlops_serve_serves_the_champion_until_interrupted(settings: Settings) -> None:
    """The CLI's `mlops serve`, as a person or a unit file starts it."""
    from mlflow import MlflowClient

    champion = registry.champion_version(MlflowClient(settings.tracking_uri), "churn")
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlops")), "serve", "--port", str(port)],
        cwd=CHECKOUT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def health() -> dict[str, Any] | None:
        try:
            return dict(httpx.get(f"http://127.0.0.1:{port}{HEALTH}", timeout=2).json())
        except httpx.HTTPError:
            assert process.poll() is None, process.communicate()[0]
            return None

    try:
        assert wait_until(health, 120, "mlops serve")["model_version"] == champion
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert f"Serving churn v{champion} on http://127.0.0.1:{port}" in output, output
