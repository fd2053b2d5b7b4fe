"""The monitoring flow on real Feast, GX, Evidently, MLflow and a Prefect test server.

Drifted data get their own workspaces (seeded and trained once per module); the shared champion
workspace is only read, and its registry and stores are checked unchanged afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_flows.adapters import events
from mlops_flows.examples.churn.scenarios import Corruption, Scenario
from mlops_flows.examples.churn.simulate import SimulationSpec, simulate
from mlops_flows.flows.monitoring_flow import MonitoringOutcome, MonitoringParameters, monitor_drift
from mlops_flows.flows.retrain_flow import parse_drift_event
from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry.versions import NoChampionError
from mlops_flows.settings import Settings
from tests.support import END, END_OF_DATA, seed_workspace, snapshot, use_workspace, wait_for_event

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("prefect_server"),
]

# The last 7 days (77..83) drift; the champion is trained on labels up to day 70.
COVARIATE = SimulationSpec(
    customers=600, days=84, end=END, scenario=Scenario.COVARIATE_DRIFT, drift_start_day=77
)
CONCEPT = SimulationSpec(
    customers=600, days=84, end=END, scenario=Scenario.CONCEPT_DRIFT, drift_start_day=77
)
TRAINED_UNTIL = END_OF_DATA - timedelta(days=7)
ACTIVITY_FEATURES = {"sessions_7d", "minutes_7d", "days_since_last_login"}
PROFILE_FEATURES = {"plan", "region", "tenure_months", "monthly_charge"}
FLUSHED = "mlops.test.flushed"


def _trained_home(factory: pytest.TempPathFactory, name: str, spec: SimulationSpec) -> Path:
    home = factory.mktemp(name) / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        seed_workspace(use_workspace(patch, home), spec)
        outcome = train_churn_model(
            TrainingParameters(as_of=TRAINED_UNTIL, reason="test-monitoring")
        )
    assert outcome.status == "champion", outcome.gate_summary
    return home


@pytest.fixture(scope="module")
def covariate_home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    return _trained_home(tmp_path_factory, "covariate", COVARIATE)


@pytest.fixture(scope="module")
def concept_home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    return _trained_home(tmp_path_factory, "concept", CONCEPT)


@pytest.fixture
def unchanged(champion_workspace: Settings) -> Iterator[Settings]:
    """The shared champion workspace, checked unchanged after the test."""
    before = snapshot(champion_workspace)
    yield champion_workspace
    assert snapshot(champion_workspace) == before


def _monitor(as_of: datetime = END_OF_DATA) -> MonitoringOutcome:
    outcome = monitor_drift(MonitoringParameters(as_of=as_of))
    assert isinstance(outcome, MonitoringOutcome)
    return outcome


def _events_since(name: str, since: datetime) -> list[Any]:
    """Stored events of that name, once a marker emitted after them has been stored too."""
    from prefect.events import emit_event

    marked = datetime.now(UTC)
    emit_event(event=FLUSHED, resource={"prefect.resource.id": f"mlops.test.{uuid.uuid4()}"})
    assert wait_for_event(FLUSHED, since=marked), "the marker event never arrived"
    return wait_for_event(name, since=since, timeout=0)


def _write_prediction_log(settings: Settings, version: str, scores: np.ndarray) -> None:
    """Records as the scoring service logs them, scored inside the window."""
    folder = Workspace(settings.home_resolved).predictions
    folder.mkdir(parents=True, exist_ok=True)
    scored_at = END_OF_DATA - timedelta(days=1)
    lines = [
        json.dumps(
            {
                "scored_at": scored_at.isoformat(),
                "customer_id": 1000 + row,
                "model_name": settings.mlflow.model_name,
                "model_version": version,
                "feature_service": settings.features.feature_service,
                "churn_probability": float(score),
                "features": {},
                "unseen_categories": ["plan"] if row % 4 == 0 else [],
                "missing_features": [],
            }
        )
        for row, score in enumerate(scores)
    ]
    # As many ids refused for a feature missing online: no score, counted apart.
    lines += [
        json.dumps(
            {
                "scored_at": scored_at.isoformat(),
                "customer_id": 5000 + row,
                "model_name": settings.mlflow.model_name,
                "model_version": version,
                "feature_service": settings.features.feature_service,
                "churn_probability": None,
                "features": {"sessions_7d": None},
                "unseen_categories": [],
                "missing_features": ["sessions_7d"],
            }
        )
        for row in range(len(scores))
    ]
    (folder / f"predictions-{scored_at:%Y-%m-%d}.jsonl").write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class CovariateRun:
    """The covariate workspace's one monitoring run on threads, with the event it emitted."""

    version: str
    outcome: MonitoringOutcome
    event: Any


@pytest.fixture(scope="module")
def covariate_run(covariate_home: Path) -> CovariateRun:
    """A prediction log served far above the model's scores, then the monitoring run (shared by
    the covariate test and the Dask comparison: one run of the flow on threads, not two)."""
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as patch:
        settings = use_workspace(patch, covariate_home)
        version = str(
            MlflowClient(settings.tracking_uri).get_registered_model("churn").aliases["champion"]
        )
        served = np.random.default_rng(1).uniform(0.85, 0.95, 600)
        _write_prediction_log(settings, version, served)
        started = datetime.now(UTC)
        outcome = _monitor()
        (event, *_) = wait_for_event(events.DRIFT_DETECTED, since=started)
    return CovariateRun(version, outcome, event)


def test_covariate_drift_is_detected_logged_and_emitted(
    covariate_run: CovariateRun, covariate_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    settings = use_workspace(monkeypatch, covariate_home)
    client = MlflowClient(settings.tracking_uri)
    version, outcome, event = covariate_run.version, covariate_run.outcome, covariate_run.event

    assert outcome.status == "drift", outcome.reason
    assert set(outcome.drifted_features) >= ACTIVITY_FEATURES
    assert not PROFILE_FEATURES & set(outcome.drifted_features)
    assert outcome.drift_share is not None
    assert outcome.drift_share >= 0.3
    assert outcome.performance is not None
    assert not outcome.performance.decayed
    assert outcome.predictions is not None
    assert outcome.predictions.drifted

    assert event.resource.id == "mlops.model.churn"
    payload = event.payload
    assert payload["model_name"] == "churn"
    assert payload["model_version"] == version
    assert datetime.fromisoformat(payload["window_end"]) == END_OF_DATA
    assert datetime.fromisoformat(payload["window_start"]) == END_OF_DATA - timedelta(days=7)
    assert payload["drift_share"] == pytest.approx(outcome.drift_share)
    assert payload["drifted_features"] == list(outcome.drifted_features)
    assert payload["performance"]["status"] == "no_decay"
    assert payload["predictions"]["status"] == "drift"
    assert outcome.unseen_categories == {"plan": 0.25}  # one logged prediction in four
    assert payload["unseen_categories"] == {"plan": 0.25}
    assert outcome.missing_features == {"sessions_7d": 0.5}  # half the ids asked for
    assert payload["missing_features"] == {"sessions_7d": 0.5}
    assert payload["report"] == f"{outcome.run_id}/drift/report.html"
    assert "columns drifted" in payload["reason"]
    # The retraining flow accepts what the monitor sends.
    fields = {k: payload[k] for k in ("model_name", "window_end", "drift_share", "reason")}
    parse_drift_event({"event_id": str(event.id), **fields}, "churn")

    run = client.get_run(str(outcome.run_id))
    assert run.info.run_name == "monitor-20260630"
    assert run.data.tags["mlops.model_version"] == version
    features = outcome.features.scores
    assert len(features) == 11
    for column, result in features.items():
        assert run.data.metrics[f"drift_score_{column}"] == pytest.approx(result.score)
    assert run.data.metrics["drift_share"] == pytest.approx(outcome.drift_share)
    assert run.data.metrics["drift_detected"] == 1.0
    assert run.data.metrics["unseen_category_share_plan"] == 0.25
    assert run.data.metrics["missing_feature_share_sessions_7d"] == 0.5
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "drift")}
    assert artifacts == {"drift/report.html", "drift/summary.json"}
    # One drift check per plan, reported (not decided on): activity drifted in every plan.
    assert set(outcome.segments) == set(payload["segments"]) == {"basic", "premium", "standard"}
    for plan, result in outcome.segments.items():
        assert payload["segments"][plan]["drift_share"] == pytest.approx(result.drift_share)
        assert set(result.drifted_columns) >= ACTIVITY_FEATURES
        assert "plan" not in result.scores
        assert run.data.metrics[f"segment_{plan}_drift_share"] == pytest.approx(result.drift_share)


def test_segments_on_dask_equal_segments_on_threads(
    covariate_run: CovariateRun, covariate_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_workspace(monkeypatch, covariate_home)
    on_threads = covariate_run.outcome
    monkeypatch.setenv("MLOPS_PREFECT__TASK_RUNNER", "dask")
    monkeypatch.setenv("MLOPS_PREFECT__DASK_WORKERS", "1")  # a worker process: one suffices

    on_dask = _monitor()

    assert list(on_dask.segments) == list(on_threads.segments) == ["basic", "premium", "standard"]
    for plan, threaded in on_threads.segments.items():
        distributed = on_dask.segments[plan]
        # Verdicts equal; scores to the last digits (Dask workers run numpy on one thread,
        # which may change the order of a sum).
        assert (distributed.status, distributed.drifted_columns) == (
            threaded.status,
            threaded.drifted_columns,
        )
        assert distributed.current_rows == threaded.current_rows
        assert distributed.drift_share == pytest.approx(threaded.drift_share)
        for column, score in threaded.scores.items():
            assert distributed.scores[column].drifted == score.drifted
            assert distributed.scores[column].score == pytest.approx(
                score.score, rel=1e-6, nan_ok=True
            ), (
                plan,
                column,
            )
    assert on_dask.status == on_threads.status
    assert on_dask.drifted_features == on_threads.drifted_features


def test_concept_drift_is_caught_by_performance_decay(
    concept_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_workspace(monkeypatch, concept_home)
    started = datetime.now(UTC)

    outcome = _monitor()

    assert outcome.features.status == "no_drift"  # the features did not move ...
    assert outcome.performance is not None
    assert outcome.performance.decayed
    assert outcome.status == "drift"
    assert outcome.predictions is None  # no scoring service has logged anything here
    (event, *_) = wait_for_event(events.DRIFT_DETECTED, since=started)
    payload = event.payload
    assert payload["drifted_features"] == []
    assert payload["performance"]["decayed"] is True
    assert payload["performance"]["drop"] > 0.05
    assert "performance: ROC AUC" in payload["reason"]


def test_baseline_data_do_not_drift_and_emit_nothing(unchanged: Settings) -> None:
    started = datetime.now(UTC)

    outcome = _monitor()

    assert outcome.status == "no_drift", outcome.reason
    assert outcome.performance is not None
    assert outcome.performance.status == "no_decay"
    assert outcome.run_id is not None
    assert _events_since(events.DRIFT_DETECTED, started) == []


@pytest.fixture
def broken_sources(covariate_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Sources with nulls in the covariate workspace; the clean ones are put back afterwards."""
    settings = use_workspace(monkeypatch, covariate_home)
    data = Workspace(settings.home_resolved).data
    simulate(SimulationSpec(**{**vars(COVARIATE), "corruptions": (Corruption.NULLS,)})).write(data)
    yield settings
    simulate(COVARIATE).write(data)


def test_broken_data_fail_the_run_emit_data_invalid_and_never_drift(
    broken_sources: Settings,
) -> None:
    started = datetime.now(UTC)

    state = monitor_drift(MonitoringParameters(as_of=END_OF_DATA), return_state=True)

    assert state.is_failed()
    assert "expect_column_values_to_not_be_null" in str(state.message)
    assert "minutes_7d" in str(state.message)
    (event, *_) = wait_for_event(events.DATA_INVALID, since=started)
    payload = event.payload
    assert event.resource.id == "mlops.model.churn"
    assert payload["suite"] == "scoring_set"
    assert any("minutes_7d" in failure for failure in payload["failed"])
    assert Path(payload["report"]).is_file()
    assert datetime.fromisoformat(payload["window"]["end"]) == END_OF_DATA
    assert _events_since(events.DRIFT_DETECTED, started) == []


def test_windows_without_data_are_not_enough_data(unchanged: Settings) -> None:
    started = datetime.now(UTC)

    for as_of in (END_OF_DATA + timedelta(days=200), END_OF_DATA - timedelta(days=365)):
        state = monitor_drift(MonitoringParameters(as_of=as_of), return_state=True)

        assert state.is_completed()
        assert state.name == "NotEnoughData"
        assert "not enough data: 0 current row(s)" in str(state.message)
        outcome = state.result()
        assert isinstance(outcome, MonitoringOutcome)
        assert (outcome.status, outcome.run_id, outcome.drift_share) == (
            "not_enough_data",
            None,
            None,
        )
    assert _events_since(events.DRIFT_DETECTED, started) == []
    assert wait_for_event(events.DATA_INVALID, since=started, timeout=0) == []


def test_no_champion_is_a_clear_error(workspace: Settings) -> None:
    Workspace(workspace.home_resolved).ensure()
    with pytest.raises(NoChampionError, match=r"no `champion` version.*mlops train"):
        monitor_drift(MonitoringParameters(as_of=END_OF_DATA))


def test_naive_as_of_is_read_as_utc() -> None:
    parameters = MonitoringParameters(as_of=datetime(2026, 6, 30, 23, 59))
    assert parameters.as_of == END_OF_DATA
