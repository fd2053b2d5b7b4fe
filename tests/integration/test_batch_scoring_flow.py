"""The batch scoring flow on real Feast, GX, MLflow and a Prefect test server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_flows.adapters import events
from mlops_flows.adapters.batch_scoring import OUTPUT_COLUMNS
from mlops_flows.adapters.validation import DataValidationError
from mlops_flows.examples.churn.simulate import Corruption, SimulationSpec, simulate
from mlops_flows.flows.batch_scoring_flow import BatchScoringParameters, score_batch
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry.versions import NoChampionError
from mlops_flows.settings import Settings
from tests.support import END_OF_DATA, SMALL, seed_workspace, snapshot, wait_for_event

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


def _files(folder: Path) -> set[Path]:
    """Every file in the folder, hidden temporary ones included (the service logs there too)."""
    return set(folder.iterdir()) if folder.exists() else set()


@pytest.fixture
def unchanged(champion_workspace: Settings) -> Iterator[Settings]:
    """The shared champion workspace, checked unchanged and left without predictions."""
    before = snapshot(champion_workspace)
    predictions = Workspace(champion_workspace.home_resolved).predictions
    existing = _files(predictions)
    yield champion_workspace
    for path in _files(predictions) - existing:
        path.unlink()
    assert snapshot(champion_workspace) == before


def test_scores_every_customer_at_as_of_with_the_champion(
    unchanged: Settings, champion_home: tuple[Path, Any, Any]
) -> None:
    champion = champion_home[2]
    folder = Workspace(unchanged.home_resolved).predictions
    before = _files(folder)
    outcome = score_batch(BatchScoringParameters(as_of=END_OF_DATA.replace(tzinfo=None)))

    assert outcome.path == folder / "batch-20260630T2359.parquet"
    assert _files(folder) - before == {outcome.path}  # no temporary file left behind
    table = pd.read_parquet(outcome.path)
    customers = pd.read_parquet(
        Workspace(unchanged.home_resolved).data / "customer_profile.parquet"
    )
    assert tuple(table.columns) == OUTPUT_COLUMNS
    assert sorted(table["customer_id"]) == sorted(customers["customer_id"].unique())
    assert table["customer_id"].is_unique
    assert len(table) == outcome.rows == SMALL.customers
    assert set(table["model_version"]) == {champion.version} == {outcome.model_version}
    assert set(table["model_name"]) == {"churn"}
    assert set(table["feature_service"]) == {unchanged.features.feature_service}
    assert (table["as_of"] == pd.Timestamp(END_OF_DATA)).all()
    assert table["churn_probability"].between(0, 1).all()
    assert outcome.distribution.count == len(table)
    assert sum(rows for _, rows in outcome.distribution.bands) == len(table)


@pytest.fixture
def corrupted_sources(unchanged: Settings) -> Iterator[Workspace]:
    """Let a test write broken sources; put the clean ones back afterwards."""
    workspace = Workspace(unchanged.home_resolved)
    yield workspace
    simulate(SMALL).write(workspace.data)


def test_broken_sources_fail_validation_and_write_nothing(
    corrupted_sources: Workspace,
) -> None:
    started = datetime.now(UTC)
    spec = SimulationSpec(**{**vars(SMALL), "corruptions": (Corruption.NULLS,)})
    simulate(spec).write(corrupted_sources.data)
    before = _files(corrupted_sources.predictions)

    with pytest.raises(DataValidationError, match=r"expect_column_values_to_not_be_null"):
        score_batch(BatchScoringParameters(as_of=END_OF_DATA))

    assert _files(corrupted_sources.predictions) == before
    (event, *_) = wait_for_event(events.DATA_INVALID, since=started)
    assert event.resource.id == "mlops.model.churn"
    assert event.payload["report"].endswith(".json")
    assert any("minutes_7d" in failure for failure in event.payload["failed"])


def test_without_a_champion_nothing_is_scored(workspace: Settings) -> None:
    seed_workspace(workspace)
    with pytest.raises(NoChampionError, match=r"'churn' in .* has no `champion` version"):
        score_batch(BatchScoringParameters(as_of=END_OF_DATA))
    assert _files(Workspace(workspace.home_resolved).predictions) == set()
