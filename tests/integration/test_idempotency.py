"""State-changing commands run twice leave the state that running them once leaves, or the
second run refuses with a clear message and changes nothing.

Here: `features apply`, `features materialize`, `train` (same request), `approve`, `reject`,
`rollback` (to the previous champion, and to a named version), each through the `mlops` CLI on
one workspace. Deploying `prefect.yaml` and `mlops stack up` need servers: their twice-run
checks are `test_deploying_twice_leaves_the_deployments_of_one_deploy` in
tests/e2e/test_closed_loop.py and `test_up_status_down` in tests/integration/test_stack.py (the
second `up` keeps the same processes).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mlops_flows.adapters import features
from mlops_flows.cli.app import app
from mlops_flows.examples.churn.simulate import SimulationSpec
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import history
from mlops_flows.settings import Settings
from tests.support import SMALL, champion_of, mlflow_client, seed_workspace, snapshot

pytestmark = pytest.mark.integration


def _feast_objects(settings: Settings) -> dict[str, Any]:
    """Every object in the Feast registry, by kind and name. Feast's equality leaves out the
    timestamps every apply sets anew (as `feast apply` does); the intervals each
    materialization appends to a view are Feast's bookkeeping and left out here."""
    store = features.open_store(settings.features.repo_path)
    registry, project = store.registry, store.project
    listed = {
        "entities": registry.list_entities(project, allow_cache=False),
        "feature_views": registry.list_feature_views(project, allow_cache=False),
        "on_demand_feature_views": registry.list_on_demand_feature_views(
            project, allow_cache=False
        ),
        "feature_services": registry.list_feature_services(project, allow_cache=False),
    }
    for view in listed["feature_views"]:
        view.materialization_intervals = []
    return {kind: {obj.name: obj for obj in objects} for kind, objects in listed.items()}


def test_features_apply_twice_and_three_times_keeps_the_registry(workspace: Settings) -> None:
    seed_workspace(workspace)
    once = _feast_objects(workspace)
    # Feast's placeholder entity for entity-less views: serving looks it up on every read.
    assert "__dummy" in once["entities"]

    store = features.open_store(workspace.features.repo_path)
    for _ in range(2):
        features.apply_repository(store, workspace.features.repo_path)
        assert _feast_objects(workspace) == once


def _online_rows(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every value in the SQLite online store, without the write time Feast stamps anew."""
    database = Workspace(settings.home_resolved).feast / "online_store.db"
    with sqlite3.connect(database) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {
            table: connection.execute(
                f"SELECT entity_key, feature_name, value, event_ts FROM {table} "  # noqa: S608
                "ORDER BY entity_key, feature_name"
            ).fetchall()
            for table in sorted(tables)
        }


def _state(settings: Settings) -> dict[str, Any]:
    """What a command may change: registry versions and tags, aliases, the audit history, the
    Feast registry's objects and the online store's values."""
    registry = snapshot(settings)
    return {
        "aliases": registry["aliases"],
        "versions": registry["versions"],
        "history": history.read(mlflow_client(settings), settings.mlflow.model_name),
        "feast": _feast_objects(settings),
        "online": _online_rows(settings),
    }


def _twice(settings: Settings, *command: str) -> tuple[Result, Result]:
    """Run an `mlops` command twice; the second run must leave the state the first left."""
    first = CliRunner().invoke(app, list(command))
    assert first.exit_code == 0, first.output
    once = _state(settings)
    second = CliRunner().invoke(app, list(command))
    assert _state(settings) == once, f"`mlops {' '.join(command)}` run twice changed the state"
    return first, second


def _says(result: Result, exit_code: int, *phrases: str) -> None:
    text = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == exit_code, result.output
    for phrase in phrases:
        assert phrase in text, result.output


@pytest.mark.usefixtures("prefect_server")
def test_every_state_changing_command_run_twice_leaves_the_state_of_one_run(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Data up to today: `features materialize` loads up to now.
    seed_workspace(workspace, SimulationSpec(**{**vars(SMALL), "end": datetime.now(UTC).date()}))
    # Every candidate may face the champion: the gates are not what this test is about.
    monkeypatch.setenv("MLOPS_GATES__NON_INFERIORITY_MARGIN", "1")
    monkeypatch.setenv("MLOPS_GATES__SLICE_MARGIN", "1")

    _twice(workspace, "features", "apply")
    _, again = _twice(workspace, "features", "materialize")
    _says(again, 0)
    assert _online_rows(workspace), "nothing was materialized"

    _, again = _twice(workspace, "train", "--reason", "first")
    _says(again, 3, "duplicate", "nothing trained: v1 (champion) was trained from this same")

    monkeypatch.setenv("MLOPS_PROMOTION_POLICY", "manual")
    for decision, version, recorded in (
        ("approve", "2", "promoted"),
        ("reject", "3", "approval_rejected"),
    ):
        trained = CliRunner().invoke(app, ["train", "--seed", version, "--reason", decision])
        _says(trained, 0, f"v{version}: challenger")
        _, again = _twice(workspace, decision, version, "--reason", "twice", "--approver", "erin")
        _says(again, 1, f"v{version} of 'churn' is not awaiting approval")
        assert history.read(mlflow_client(workspace), "churn", version)[-1].action == recorded
    assert champion_of(workspace) == "2"

    _, again = _twice(workspace, "rollback", "--reason", "twice", "--no-redeploy")
    _says(again, 1, "Champion v1 is itself a rollback (from v2)", "Nothing was changed.")
    _, again = _twice(workspace, "rollback", "--to", "2", "--reason", "twice", "--no-redeploy")
    _says(again, 1, "v2 already is the champion. Nothing was changed.")
    assert champion_of(workspace) == "2"
