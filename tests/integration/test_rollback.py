"""Rollback through the CLI and the flow: `champion` returns to an earlier approved version, the
move is recorded and announced, the service serves it; a never-gated version is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_flows import vocabulary
from mlops_flows.adapters import events
from mlops_flows.cli.app import app
from mlops_flows.flows.rollback_flow import RollbackParameters, rollback_churn_model
from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model
from mlops_flows.registry import governance, history
from mlops_flows.serving.client import ServiceClient
from mlops_flows.serving.runner import running_service
from mlops_flows.settings import Settings
from tests.support import (
    champion_of,
    mlflow_client,
    snapshot,
    train_two_champions,
    use_workspace,
    wait_for_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture(scope="module")
def rollback_home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """Data up to today (the redeploy materializes now): v1 then v2 champions, v3 rejected."""
    home = tmp_path_factory.mktemp("rollback") / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        first, second = train_two_champions(patch, home)
        patch.setenv("MLOPS_GATES__MIN_ROC_AUC", "0.99")  # no model reaches it
        third = train_churn_model(TrainingParameters(reason="test-rejected", seed=3))
    statuses = [(o.version, o.status) for o in (first, second, third)]
    assert statuses == [("1", "champion"), ("2", "champion"), ("3", "rejected")]
    return home


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, rollback_home: Path) -> Settings:
    return use_workspace(monkeypatch, rollback_home)


def test_a_version_that_never_passed_its_gates_is_refused(settings: Settings) -> None:
    before = snapshot(settings)

    result = CliRunner().invoke(
        app, ["rollback", "--to", "3", "--reason", "try v3", "--no-redeploy"]
    )

    assert result.exit_code == 1
    assert "v3 never passed its gates" in " ".join(result.output.split())
    assert snapshot(settings) == before


def test_the_cli_rolls_back_and_the_flow_restores_and_redeploys(settings: Settings) -> None:
    """One sequence (the second step starts where the first ended): the CLI moves `champion`
    back from v2 to v1, then the flow restores v2 by name and redeploys it."""
    _cli_rolls_back_to_the_previous_champion_and_records_it(settings)
    _the_flow_restores_a_named_version_and_redeploys_it(settings)


def _cli_rolls_back_to_the_previous_champion_and_records_it(settings: Settings) -> None:
    assert champion_of(settings) == "2"
    since = datetime.now(UTC)

    result = CliRunner().invoke(
        app,
        ["rollback", "--reason", "complaints about v2", "--requested-by", "dana", "--no-redeploy"],
    )

    assert result.exit_code == 0, result.output
    assert champion_of(settings) == "1"
    tags = governance.version_tags(mlflow_client(settings), settings.mlflow.model_name, "2")
    assert tags["status"] == "rolled_back"
    assert tags["rolled_back_by"].startswith("dana via prefect-flow-run:")
    for version in ("1", "2"):
        listed = mlflow_client(settings).get_model_version(settings.mlflow.model_name, version)
        assert len(listed.tags) <= vocabulary.MAX_TAGS, sorted(listed.tags)
    entry = history.read(mlflow_client(settings), settings.mlflow.model_name, "2")[-1]
    assert (entry.action, entry.from_version, entry.to_version) == ("rolled_back", "2", "1")
    assert entry.reason == "complaints about v2"
    announced = wait_for_event(events.MODEL_ROLLED_BACK, since)
    assert announced[0].payload["restored_version"] == "1"
    card = mlflow_client(settings).get_model_version(settings.mlflow.model_name, "2").description
    assert "rolled" in card.lower()


def _the_flow_restores_a_named_version_and_redeploys_it(settings: Settings) -> None:
    assert champion_of(settings) == "1"
    with running_service(settings) as url:
        outcome = rollback_churn_model(
            RollbackParameters(requested_by="erin", reason="v2 was fine after all", to_version="2")
        )
        with ServiceClient(url, token="", timeout=5.0) as service:  # health needs no token
            served = service.health().model_version

    assert (outcome.restored_version, outcome.rolled_back_version) == ("2", "1")
    assert outcome.redeployed
    assert champion_of(settings) == served == "2"
    actions = [e.action for e in history.read(mlflow_client(settings), settings.mlflow.model_name)]
    assert actions.count("rolled_back") == 2
