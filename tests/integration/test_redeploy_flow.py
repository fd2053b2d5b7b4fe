"""The redeploy flow against the real scoring service, registry, Feast stores and events.

One workspace for the module, with data ending today (the flow materializes up to now, and
features older than a view's TTL would be missing online) and two trained versions: v1, then v2
as champion. Rollbacks move the alias, so each test starts from v2 as champion again.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlops_flows.adapters import events
from mlops_flows.flows.redeploy_flow import (
    RedeployFailedError,
    RedeployParameterError,
    RedeployParameters,
    redeploy,
)
from mlops_flows.registry import versions as registry
from mlops_flows.serving.client import ServiceClient
from mlops_flows.serving.contract import reload_token
from mlops_flows.serving.runner import running_service
from mlops_flows.settings import Settings
from tests.support import (
    promote_for_set_up,
    snapshot,
    train_two_champions,
    use_workspace,
    wait_for_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]

V1, V2 = "1", "2"


@pytest.fixture(scope="module")
def redeploy_home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A workspace with fresh data where v1 was trained a week before v2, the champion."""
    home = tmp_path_factory.mktemp("redeploy") / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        first, second = train_two_champions(patch, home)
    assert (first.version, first.status) == (V1, "champion")
    assert (second.version, second.status) == (V2, "champion"), second.gate_summary
    return home


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch, redeploy_home: Path) -> Settings:
    """The module's workspace with v2 as champion, whatever an earlier test rolled back."""
    from mlflow import MlflowClient

    settings = use_workspace(monkeypatch, redeploy_home)
    client = MlflowClient(settings.tracking_uri)
    if registry.champion_version(client, settings.mlflow.model_name) != V2:
        promote_for_set_up(client, settings.mlflow.model_name, V2)
    return settings


@pytest.fixture
def service(deployed: Settings) -> Iterator[str]:
    """The real scoring service on a free loopback port, serving the workspace's champion."""
    with running_service(deployed) as base_url:
        yield base_url


def _served_version(settings: Settings, base_url: str) -> str | None:
    with ServiceClient(base_url, reload_token(settings), timeout=10) as client:
        return client.health().model_version


def _champion(settings: Settings) -> str | None:
    from mlflow import MlflowClient

    return registry.champion_version(
        MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    )


def _tags(settings: Settings, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return registry.read_facts(
        MlflowClient(settings.tracking_uri), settings.mlflow.model_name, version
    )


def _rolled_back_event(since: datetime, version: str) -> Any:
    """The rollback event of this test: the API may also hold earlier tests' events."""
    for event in wait_for_event(events.MODEL_ROLLED_BACK, since=since):
        if event.payload.get("version") == version:
            return event
    raise AssertionError(f"no {events.MODEL_ROLLED_BACK} event for v{version} since {since}")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redeploy_serves_the_champion_and_online_scores_match_offline(
    deployed: Settings, service: str
) -> None:
    outcome = redeploy(RedeployParameters(version=V2, previous_version=V1))

    assert outcome.version == V2
    check = outcome.skew_check
    assert check.passed, check.reason
    assert (check.compared, check.mismatched) == (20, 0)
    assert check.max_abs_difference is not None
    assert check.max_abs_difference <= 1e-6
    assert _served_version(deployed, service) == V2
    assert _champion(deployed) == V2
    assert _tags(deployed, V2)["status"] == "champion"


def test_unreachable_service_rolls_back_and_reports_the_failed_reload(
    deployed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVING__RELOAD_TOKEN", "test-token")
    started = datetime.now(UTC)
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLOPS_SERVING__URL", url)

    with pytest.raises(RedeployFailedError, match=r"not reachable") as raised:
        redeploy(RedeployParameters(version=V2, previous_version=V1))

    message = str(raised.value)
    assert url in message
    assert "champion moved back from v2 to v1" in message
    assert "the service could not be reloaded" in message
    assert _champion(deployed) == V1
    assert _tags(deployed, V2)["status"] == "rolled_back"
    event = _rolled_back_event(started, V2)
    assert event.payload["restored_version"] == V1
    assert "not reachable" in event.payload["reason"]


def test_without_a_previous_version_the_alias_stays_but_the_failure_is_told(
    deployed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVING__RELOAD_TOKEN", "test-token")
    started = datetime.now(UTC)
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLOPS_SERVING__URL", url)

    with pytest.raises(RedeployFailedError, match=r"no previous version to restore"):
        redeploy(RedeployParameters(version=V2))

    assert _champion(deployed) == V2
    tags = _tags(deployed, V2)
    assert tags["status"] == "champion"
    assert "not reachable" in tags["redeploy_failure"]
    event = _rolled_back_event(started, V2)
    assert event.payload["restored_version"] is None


def test_the_materialize_flow_loads_every_view_up_to_its_end(deployed: Settings) -> None:
    """The hourly deployment's flow, run in this process: Feast records each view as
    materialized up to the flow's end."""
    from mlops_flows.adapters import features
    from mlops_flows.flows.materialize_flow import materialize_features

    end = datetime.now(UTC).replace(microsecond=0)
    assert materialize_features(end=end) == end.isoformat()
    store = features.open_store(deployed.features.repo_path)
    views = store.list_feature_views()
    assert views
    assert {view.materialization_intervals[-1][1] for view in views} == {end}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            RedeployParameters(version=V1, previous_version=V2),
            r"parameter `version`='1' is not the champion: the alias `champion` points at "
            r"version 2",
        ),
        (
            RedeployParameters(version=V2, previous_version="9"),
            r"parameter `previous_version`='9' is not a version of model 'churn'",
        ),
        (
            RedeployParameters(version=V2, previous_version=V2),
            r"parameter `previous_version`='2' equals `version`",
        ),
    ],
)
def test_parameters_that_disagree_with_the_registry_stop_before_any_change(
    deployed: Settings,
    parameters: RedeployParameters,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = snapshot(deployed)
    monkeypatch.setenv("MLOPS_SERVING__URL", f"http://127.0.0.1:{_closed_port()}")

    with pytest.raises(RedeployParameterError, match=message):
        redeploy(parameters)

    assert snapshot(deployed) == before
