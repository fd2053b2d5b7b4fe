"""Reproducing a registered version on real Feast, GX, scikit-learn and MLflow, and its card."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_flows.adapters import features
from mlops_flows.cli.app import app
from mlops_flows.cli.common import EXIT_FAILED, EXIT_NOT_REPRODUCED
from mlops_flows.flows.training_flow import TrainingOutcome, TrainingParameters, train_churn_model
from mlops_flows.logic import model_card
from mlops_flows.logic.keys import keys_of
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import card
from mlops_flows.registry.reproduce import ReproductionError, ReproductionReport, reproduce
from mlops_flows.settings import Settings
from tests.support import seed_workspace, unset, use_workspace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture(scope="module")
def trained_home(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: None
) -> tuple[Path, TrainingOutcome]:
    """A workspace with one trained version (v1, champion), its sources left for the tests."""
    home = tmp_path_factory.mktemp("reproduce") / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        seed_workspace(use_workspace(patch, home))
        outcome = train_churn_model(TrainingParameters(reason="test-reproduce"))
    return home, outcome


@pytest.fixture
def trained(
    monkeypatch: pytest.MonkeyPatch, trained_home: tuple[Path, TrainingOutcome]
) -> Iterator[tuple[Settings, TrainingOutcome]]:
    """Settings of the trained workspace; any source a test edits is put back afterwards."""
    settings = use_workspace(monkeypatch, trained_home[0])
    data = Workspace(settings.home_resolved).data
    kept = {path: path.read_bytes() for path in data.glob("*.parquet")}
    yield settings, trained_home[1]
    for path, content in kept.items():
        path.write_bytes(content)


def outcomes(report: ReproductionReport) -> dict[str, bool | None]:
    return {check.name: check.match for check in report.checks}


def test_a_trained_version_reproduces_exactly(trained: Any) -> None:
    settings, outcome = trained

    report = reproduce(settings, outcome.version)

    assert report.exact, report.to_text()
    assert report.run_id == outcome.run_id
    found = outcomes(report)
    for name in ("training_set_digest", "entity_rows_digest", "feature_service_digest"):
        assert found[name] is True, report.to_text()
    for name in ("train_metrics", "holdout_metrics", "predictions"):
        assert found[name] is True, report.to_text()


def test_one_changed_feature_value_in_the_window_is_named_as_changed_data(trained: Any) -> None:
    settings, outcome = trained
    _change_one_activity_value(settings)

    report = reproduce(settings, outcome.version)

    assert not report.exact
    found = outcomes(report)
    assert found["training_set_digest"] is False
    assert found["entity_rows_digest"] is True
    assert found["feature_service_digest"] is True
    (check,) = [c for c in report.differences if c.name == "training_set_digest"]
    assert check.meaning.startswith("data changed: feature values in the sources differ")
    assert not any("features changed" in c.meaning for c in report.checks)


def test_one_changed_label_is_named_as_changed_label_rows(trained: Any) -> None:
    settings, outcome = trained
    _flip_one_label(settings)

    report = reproduce(settings, outcome.version)

    found = outcomes(report)
    assert found["entity_rows_digest"] is False
    assert found["training_set_digest"] is False
    assert found["training_set_rows"] is True
    assert found["feature_service_digest"] is True
    assert found["train_metrics"] is False or found["holdout_metrics"] is False
    (check,) = [c for c in report.differences if c.name == "entity_rows_digest"]
    assert check.meaning.startswith("data changed: the label rows of the window")


def _window(settings: Settings) -> pd.DataFrame:
    """The label rows the version was trained on (the window ends at the last label)."""
    keys = keys_of(settings)
    labels = features.read_labels(settings.labels_path, keys)
    end = labels[keys.timestamp].max()
    return labels[labels[keys.timestamp] >= end - pd.Timedelta(days=settings.training.window_days)]


def _change_one_activity_value(settings: Settings) -> None:
    """Add a minute to the activity row the point-in-time join picks for one label row."""
    label = _window(settings).iloc[0]
    path = Workspace(settings.home_resolved).data / "customer_activity.parquet"
    activity = pd.read_parquet(path)
    candidates = activity[
        (activity["customer_id"] == label["customer_id"])
        & (activity["event_timestamp"] <= label["event_timestamp"])
    ]
    picked = candidates["event_timestamp"].idxmax()
    activity.loc[picked, "minutes_7d"] += 1.0
    activity.to_parquet(path, index=False)


def _flip_one_label(settings: Settings) -> None:
    keys = keys_of(settings)
    labels = pd.read_parquet(settings.labels_path)
    row = _window(settings).index[0]  # read_labels keeps the file's row positions
    labels.loc[row, keys.label] = 1 - labels.loc[row, keys.label]
    labels.to_parquet(settings.labels_path, index=False)


def test_an_unknown_version_is_an_error_listing_the_versions(trained: Any) -> None:
    settings, outcome = trained
    listed = rf"no version '99' \(versions: {outcome.version}\)"
    with pytest.raises(ReproductionError, match=listed):
        reproduce(settings, "99")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI exports settings into os.environ: every variable it may write is restored."""
    for name in ("PREFECT_API_URL", *Settings().library_environment()):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            unset(monkeypatch, name)
    monkeypatch.setenv("MLOPS_PREFECT__API_URL", "http://127.0.0.1:9/api")  # never probed
    return CliRunner()


def test_cli_reproduce_exits_0_when_exact_and_4_naming_the_change(
    trained: Any, runner: CliRunner
) -> None:
    settings, outcome = trained
    exact = runner.invoke(app, ["reproduce", outcome.version])
    assert exact.exit_code == 0, exact.output
    assert "exact" in exact.output

    _change_one_activity_value(settings)
    changed = runner.invoke(app, ["reproduce", outcome.version])
    assert changed.exit_code == EXIT_NOT_REPRODUCED, changed.output
    assert "training_set_digest:datachanged" in "".join(changed.output.split())


def test_cli_reproduce_of_an_unknown_version_exits_1(trained: Any, runner: CliRunner) -> None:
    result = runner.invoke(app, ["reproduce", "99"])
    assert result.exit_code == EXIT_FAILED
    assert "no version '99'" in result.output


def test_refresh_writes_the_card_with_digest_and_gates_into_the_registry(trained: Any) -> None:
    from mlflow import MlflowClient

    settings, outcome = trained
    client = MlflowClient(settings.tracking_uri)
    name = settings.mlflow.model_name

    markdown = card.refresh(client, name, outcome.version)

    assert client.get_model_version(name, outcome.version).description == markdown
    run = client.get_run(outcome.run_id)
    assert run.data.tags["lineage.training_set_digest"] in markdown
    assert run.data.tags["lineage.entity_rows_digest"] in markdown
    assert "4 gates, all passed." in markdown
    assert "| roc_auc | yes |" in markdown
    assert "**Champion**" in markdown
    assert "| plan | string | basic, premium, standard |" in markdown
    assert len(markdown) <= model_card.DESCRIPTION_LIMIT
    # The use case's words, recorded with the version (card.json) and on the registered model.
    assert f"## Intended use\n\n{settings.card.intended_use}\n" in markdown
    assert markdown.endswith(f"- {settings.card.known_limits[-1]}\n")
    assert client.get_registered_model(name).description == settings.card.description
