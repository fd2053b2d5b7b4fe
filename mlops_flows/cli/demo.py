"""`mlops demo --loop`: the whole closed loop, locally, on embedded defaults.

Baseline champion served -> concept drift -> drift detected -> retrain -> gates -> promotion ->
redeploy -> the service serves the new version, and its quality on recent data is back.
The flows are called in this process, in the order the deployments' triggers would run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops_flows.adapters import features, online_store
from mlops_flows.examples.churn.scenarios import Scenario
from mlops_flows.examples.churn.simulate import SimulationSpec, simulate
from mlops_flows.logic import training
from mlops_flows.logic.keys import keys_of
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings

if TYPE_CHECKING:  # the flows import the heavy libraries: imported when the loop runs
    from mlops_flows.steps.training import TrainingStatus

DAYS, DRIFT_DAY = 112, 56  # eight weeks of the old regime, eight of the new one


@dataclass(frozen=True)
class LoopStory:
    """What happened, for the closing summary."""

    baseline_version: str
    drift_reason: str
    retrained_version: str
    retrained_status: TrainingStatus
    served_version: str
    recent_roc_auc: dict[str, float]  # version -> ROC AUC on the last labelled week


def run_loop(settings: Settings, customers: int, say: Callable[[str], None]) -> LoopStory:
    """Simulate concept drift and take the champion through drift, retrain and redeploy."""
    from mlops_flows.adapters.drift import DriftStatus
    from mlops_flows.flows.monitoring_flow import MonitoringParameters, monitor_drift
    from mlops_flows.flows.redeploy_flow import RedeployParameters, redeploy
    from mlops_flows.flows.retrain_flow import retrain_on_drift
    from mlops_flows.flows.training_flow import (
        TrainingParameters,
        TrainingStatus,
        train_churn_model,
    )
    from mlops_flows.serving.client import ServiceClient
    from mlops_flows.serving.contract import reload_token
    from mlops_flows.serving.runner import running_service

    today = datetime.now(UTC).date()
    spec = SimulationSpec(
        customers=customers,
        days=DAYS,
        end=today,
        scenario=Scenario.CONCEPT_DRIFT,
        drift_start_day=DRIFT_DAY,
    )
    simulate(spec).write(Workspace(settings.home_resolved).ensure().data)
    store = features.open_store(settings.features.repo_path)
    features.apply_repository(store, settings.features.repo_path)
    online_store.materialize(store, datetime.now(UTC))
    drift_start = spec.day_timestamp(DRIFT_DAY)
    say(f"simulated {DAYS} days; the churn mechanism changes on {drift_start:%Y-%m-%d}")

    baseline = train_churn_model(
        TrainingParameters(as_of=drift_start - timedelta(minutes=1), reason="demo-baseline")
    )
    say(f"baseline trained before the change: v{baseline.version} {baseline.status}")

    timeout = settings.serving.request_timeout_seconds
    with (
        running_service(settings) as url,
        ServiceClient(url, reload_token(settings), timeout) as client,
    ):
        _score_everyone(client, spec)
        say(f"service at {url} serves v{client.health().model_version}")

        monitored = monitor_drift(MonitoringParameters())
        say(f"monitoring: {monitored.reason}")
        if monitored.status is not DriftStatus.DRIFT:
            raise RuntimeError("the demo expected drift and found none: " + monitored.reason)
        retrained = retrain_on_drift(
            event_id=f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}",
            model_name=settings.mlflow.model_name,
            model_version=baseline.version,
            window_end=monitored.window_end.isoformat(),
            drift_share=monitored.drift_share,
            reason=monitored.reason,
        )
        say(f"retrained on the recent window: v{retrained.version} {retrained.status}")
        if retrained.status is TrainingStatus.CHAMPION:
            redeployed = redeploy(
                RedeployParameters(
                    version=retrained.version,
                    previous_version=baseline.version,
                )
            )
            check = redeployed.skew_check
            say(
                f"redeployed v{redeployed.version}: {check.compared} customers scored online "
                f"and offline, {check.mismatched} mismatched"
            )
        served = str(client.health().model_version)
    quality = {
        version: _recent_roc_auc(settings, store, version)
        for version in dict.fromkeys([baseline.version, retrained.version])
    }
    return LoopStory(
        baseline.version, monitored.reason, retrained.version, retrained.status, served, quality
    )


def _score_everyone(client: Any, spec: SimulationSpec) -> None:
    """Traffic for the prediction log, in batches the service accepts."""
    ids = list(range(1000, 1000 + spec.customers))
    for start in range(0, len(ids), 100):
        client.predict(ids[start : start + 100])


def _recent_roc_auc(settings: Settings, store: Any, version: str) -> float:
    """ROC AUC of a version on the labels of the last week (point-in-time features)."""
    from sklearn.metrics import roc_auc_score

    keys = keys_of(settings)
    labels = features.read_labels(settings.labels_path, keys)
    end = labels[keys.timestamp].max().to_pydatetime()
    window = features.select_window(labels, keys, end - timedelta(days=7), end)
    service = features.get_feature_service(store, settings.features.feature_service)
    frame = features.build_training_set(store, service, window, keys)
    model = registry.load_version(settings.tracking_uri, settings.mlflow.model_name, version)
    scores = training.predict_scores(model, frame, training.model_feature_names(model))
    return float(roc_auc_score(frame[keys.label], scores))
