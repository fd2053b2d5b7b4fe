"""Drift monitoring: recent features (and labels) against the champion's reference, one flow."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.utilities.annotations import unmapped
from pydantic import Field

from mlops_flows.adapters import batch_scoring, drift, events, features, tracking
from mlops_flows.adapters.drift import DecayResult, DriftResult
from mlops_flows.adapters.task_runners import task_runner_for
from mlops_flows.adapters.validation import ValidationResult
from mlops_flows.flows.data_checks import check_or_stop
from mlops_flows.logic import training
from mlops_flows.logic.keys import keys_of
from mlops_flows.logic.times import UtcDatetime, to_utc
from mlops_flows.ops.runtime import FlowParameters
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import versions as registry
from mlops_flows.serving import scoring
from mlops_flows.serving.contract import PredictionLog
from mlops_flows.settings import MonitoringSettings, Settings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

REFERENCE_ARTIFACT = "reference/reference.parquet"
REPORT_ARTIFACT = "drift/report.html"
SCORE_COLUMN = "churn_probability"


class MonitoringParameters(FlowParameters):
    """Per-run knobs; empty fields take their defaults from settings."""

    as_of: UtcDatetime | None = Field(
        default=None, description="End of the window; empty means now. A naive time is UTC."
    )
    window_days: int | None = Field(default=None, ge=1, description="Days of recent data.")
    population_view: str = Field(
        default=batch_scoring.DEFAULT_POPULATION_VIEW,
        description="Feature view whose source file lists the customers to compare.",
    )


@dataclass(frozen=True)
class ChampionReference:
    """The serving version and the sample of its training set kept for drift checks."""

    model_name: str
    version: str
    run_id: str
    reference: pd.DataFrame
    reference_roc_auc: float | None  # the run's holdout ROC AUC


@dataclass(frozen=True)
class CurrentWindow:
    """Point-in-time features of every known customer, each day of the window."""

    frame: pd.DataFrame
    feature_columns: list[str]
    feature_service: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class MonitoringOutcome:
    """What a monitoring run found; the CLI and the tests read it."""

    status: str  # drift | no_drift | not_enough_data
    drift_share: float | None
    drifted_features: tuple[str, ...]
    run_id: str | None
    model_name: str
    model_version: str
    window_start: datetime
    window_end: datetime
    reason: str
    features: DriftResult
    performance: DecayResult | None = None
    predictions: DriftResult | None = None
    segments: Mapping[str, DriftResult] = field(default_factory=dict)  # informative only
    unseen_categories: Mapping[str, float] = field(default_factory=dict)  # share per feature
    missing_features: Mapping[str, float] = field(default_factory=dict)  # share per feature


@task(cache_policy=NO_CACHE)
def load_champion_reference(settings: Settings) -> ChampionReference:
    """The champion's version, run, holdout ROC AUC and reference sample."""
    import mlflow.artifacts
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    version = registry.require_champion(client, name, settings.tracking_uri)
    run_id = str(client.get_model_version(name, version).run_id)
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=REFERENCE_ARTIFACT,
                dst_path=folder,
                tracking_uri=settings.tracking_uri,
            )
        except MlflowException as error:
            raise FileNotFoundError(
                f"Champion v{version} (run {run_id}) has no {REFERENCE_ARTIFACT} ({error}). "
                "Every training run logs one: retrain, or promote a version trained by "
                "this project."
            ) from error
        reference = pd.read_parquet(path)
    holdout = client.get_run(run_id).data.metrics.get("holdout_roc_auc")
    get_run_logger().info(
        "Champion v%s (run %s): %d reference rows", version, run_id, len(reference)
    )
    return ChampionReference(name, version, run_id, reference, holdout)


@task(cache_policy=NO_CACHE)
def build_current_window(
    settings: Settings, start: datetime, end: datetime, population_view: str
) -> CurrentWindow:
    """Features of every known customer at 00:00 of each day the sources cover in the window."""
    key, stamp = settings.features.entity_key, settings.features.timestamp_column
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    features.check_sources(store, service)
    names = features.feature_names(service)
    days = drift.window_midnights(start, end, *_observed_span(store, service))
    path, timestamp_field = batch_scoring.population_source(store, population_view)
    source = pd.read_parquet(path, columns=[key, timestamp_field])
    first_seen = pd.to_datetime(source[timestamp_field], utc=True).groupby(source[key]).min()
    entities = drift.entity_frame(first_seen, days, key, stamp)
    if entities.empty:
        frame = entities.reindex(columns=[key, stamp, *names])
    else:
        frame = features.retrieve(store, service, entities[[key, stamp]], key, stamp)
    get_run_logger().info(
        "Read %s features: %d rows over %d day(s) from %s to %s",
        service.name,
        len(frame),
        len(days),
        start,
        end,
    )
    return CurrentWindow(frame, names, service.name, start, end)


def _observed_span(
    store: FeatureStore, service: FeatureService
) -> tuple[datetime | None, datetime | None]:
    """First and last timestamp of any file source behind the service."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from feast import FileSource

    views = {view.name: view for view in store.list_feature_views()}
    stamps: list[datetime] = []
    for projection in service.feature_view_projections:
        view = views.get(projection.name)  # on-demand views read other views, not files
        if view is None or not isinstance(view.batch_source, FileSource):
            continue
        source = view.batch_source
        column = pq.read_table(source.path, columns=[source.timestamp_field]).column(0)
        bounds = pc.min_max(column)
        for bound in ("min", "max"):
            value = bounds[bound].as_py()
            if value is not None:
                stamps.append(to_utc(value))
    return (min(stamps), max(stamps)) if stamps else (None, None)


@task(cache_policy=NO_CACHE)
def validate_current_window(settings: Settings, window: CurrentWindow) -> ValidationResult:
    """Run the scoring suite; on failure store the report, emit `data invalid` and stop.

    A broken pipeline is not drift: the run fails here and no retraining is triggered.
    """
    return check_or_stop(
        settings,
        window.frame,
        settings.expectations.scoring_suite,
        what="Monitoring window",
        consequence="No drift was computed.",
        payload={
            "feature_service": window.feature_service,
            "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        },
    )


def _categorical(champion: ChampionReference, window: CurrentWindow) -> list[str]:
    return [
        column
        for column in window.feature_columns
        if column in champion.reference.columns
        and not pd.api.types.is_numeric_dtype(champion.reference[column])
    ]


@task(cache_policy=NO_CACHE)
def check_feature_drift(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> DriftResult:
    """Evidently's per-feature tests, current window against the champion's reference."""
    return drift.check_drift(
        champion.reference,
        window.frame,
        window.feature_columns,
        _categorical(champion, window),
        settings.monitoring,
    )


@task(cache_policy=NO_CACHE, task_run_name="check-segment-drift-{segment}")
def check_segment_drift(
    segment: str,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    columns: list[str],
    categorical: list[str],
    segment_column: str,
    settings: MonitoringSettings,
) -> DriftResult:
    """Drift of one segment's rows (reference, current), on a thread or a Dask worker."""
    reference, current = frames
    return drift.check_segment_drift(
        reference, current, columns, categorical, segment_column, settings
    )


def check_segments(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> dict[str, DriftResult]:
    """One drift check per segment, fanned out on the configured task runner."""
    column = settings.monitoring.segment_column
    if not column or column not in window.feature_columns:
        return {}
    frames = drift.split_by_segment(champion.reference, window.frame, column)
    segments = list(frames)
    with task_runner_for(settings.prefect) as runner:
        futures = runner.map(
            check_segment_drift,
            parameters={
                "segment": segments,
                "frames": [frames[segment] for segment in segments],
                "columns": unmapped(window.feature_columns),
                "categorical": unmapped(_categorical(champion, window)),
                "segment_column": unmapped(column),
                "settings": unmapped(settings.monitoring),
            },
        )
        return {segment: future.result() for segment, future in zip(segments, futures, strict=True)}


def _load_model(settings: Settings, champion: ChampionReference) -> Any:
    # The version, not the alias: the alias may move while this run reads.
    return registry.load_version(settings.tracking_uri, champion.model_name, champion.version)


@task(cache_policy=NO_CACHE)
def check_performance(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> DecayResult | None:
    """ROC AUC of the champion on the window's labels, if any have arrived."""
    logger, keys = get_run_logger(), keys_of(settings)
    if champion.reference_roc_auc is None:
        logger.warning("Champion run %s has no holdout_roc_auc: no decay check", champion.run_id)
        return None
    if not settings.labels_path.is_file():
        logger.info("No label file at %s: no decay check", settings.labels_path)
        return None
    labels = features.read_labels(settings.labels_path, keys)
    try:
        labelled = features.select_window(labels, keys, window.start, window.end)
    except features.LabelsError as error:
        logger.info("No decay check: %s", error)
        return None
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    frame = features.build_training_set(store, service, labelled, keys)
    model = _load_model(settings, champion)
    scores = training.predict_scores(
        model, frame, training.model_feature_names(model), settings.training.threads
    )
    return drift.performance_decay(
        frame[keys.label].to_numpy(),
        scores,
        champion.reference_roc_auc,
        settings.monitoring.max_roc_auc_drop,
        min_rows=settings.monitoring.min_rows,
    )


def _served_records(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> list[dict[str, Any]]:
    """The scoring service's log records of the champion inside the window."""
    log = PredictionLog(Workspace(settings.home_resolved).predictions)
    return [
        record
        for record in log.read(window.start, window.end)
        if record.get("model_name") == champion.model_name
        and str(record.get("model_version")) == champion.version
    ]


@task(cache_policy=NO_CACHE)
def count_input_problems(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> tuple[dict[str, float], dict[str, float]]:
    """Per feature, the share of the champion's served predictions in the window made on a
    category it never saw in training (its encoder scores them as if absent), and the share
    of the ids it was asked to score that were refused for that feature missing online."""
    records = _served_records(settings, champion, window)
    scored = [record for record in records if record.get(SCORE_COLUMN) is not None]
    unseen = scoring.feature_shares(scored, "unseen_categories")
    missing = scoring.feature_shares(records, "missing_features")
    for what, shares in (
        ("Served on categories unseen in training", unseen),
        ("Refused for features missing online", missing),
    ):
        if shares:
            get_run_logger().warning(
                "%s: %s", what, ", ".join(f"{name} {share:.1%}" for name, share in shares.items())
            )
    return unseen, missing


@task(cache_policy=NO_CACHE)
def check_prediction_drift(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> DriftResult | None:
    """Served churn probabilities (scoring service log) against the champion's on the reference.

    Informative only: served scores can move for reasons a retrain does not fix (serving skew).
    """
    served = [
        float(record[SCORE_COLUMN])
        for record in _served_records(settings, champion, window)
        if record.get(SCORE_COLUMN) is not None  # an id refused for missing features
    ]
    if len(served) < settings.monitoring.min_rows:
        get_run_logger().info(
            "%d logged prediction(s) of v%s in the window: fewer than %d, no prediction check",
            len(served),
            champion.version,
            settings.monitoring.min_rows,
        )
        return None
    model = _load_model(settings, champion)
    expected = training.predict_scores(
        model,
        champion.reference,
        training.model_feature_names(model),
        settings.training.threads,
    )
    return drift.check_drift(
        pd.DataFrame({SCORE_COLUMN: expected}),
        pd.DataFrame({SCORE_COLUMN: served}),
        [SCORE_COLUMN],
        [],
        settings.monitoring,
    )


@task(cache_policy=NO_CACHE)
def log_monitoring_run(
    settings: Settings,
    experiment_id: str,
    champion: ChampionReference,
    outcome: MonitoringOutcome,
) -> str:
    """One MLflow run: the HTML report, per-feature scores and the summary metrics."""
    found = outcome.features
    metrics: dict[str, float] = {
        "drift_detected": float(outcome.status == drift.DRIFT),
        "drift_share": found.drift_share or 0.0,
        "drifted_features": float(len(found.drifted_columns)),
        "reference_rows": float(found.reference_rows),
        "current_rows": float(found.current_rows),
        "current_rows_total": float(found.current_rows_total),
        **{f"drift_score_{column}": result.score for column, result in found.scores.items()},
    }
    if outcome.performance is not None and outcome.performance.observed_roc_auc is not None:
        metrics["roc_auc"] = outcome.performance.observed_roc_auc
        metrics["roc_auc_drop"] = outcome.performance.drop or 0.0
        metrics["performance_decayed"] = float(outcome.performance.decayed)
    if outcome.predictions is not None and outcome.predictions.scores:
        metrics["prediction_drift_score"] = outcome.predictions.scores[SCORE_COLUMN].score
    for column, share in outcome.unseen_categories.items():
        metrics[f"unseen_category_share_{column}"] = share
    for column, share in outcome.missing_features.items():
        metrics[f"missing_feature_share_{column}"] = share
    for segment, result in outcome.segments.items():
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", segment)
        metrics[f"segment_{name}_drift_share"] = result.drift_share or 0.0
        metrics[f"segment_{name}_drifted_features"] = float(len(result.drifted_columns))
    return _log_to_mlflow(
        experiment_id,
        run_name=f"monitor-{outcome.window_end:%Y%m%d}",
        tags={
            "mlops.kind": "monitoring",
            "mlops.model_name": champion.model_name,
            "mlops.model_version": champion.version,
            "mlops.champion_run_id": champion.run_id,
            "mlops.monitoring_status": outcome.status,
            "mlops.prefect_flow_run_id": str(flow_run.get_id() or "none"),
        },
        parameters={
            "window_start": outcome.window_start.isoformat(),
            "window_end": outcome.window_end.isoformat(),
            "feature_service": settings.features.feature_service,
            **settings.monitoring.model_dump(),
        },
        metrics=metrics,
        summary=_payload(outcome, report=None)
        | {
            "features": found.to_payload(),
            "segment_results": {
                segment: result.to_payload() for segment, result in outcome.segments.items()
            },
        },
        result=found,
    )


def _log_to_mlflow(
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
    parameters: dict[str, Any],
    metrics: dict[str, float],
    summary: dict[str, Any],
    result: DriftResult,
) -> str:
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(tags)
        mlflow.log_params({name: str(value) for name, value in parameters.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(summary, "drift/summary.json")
        with tempfile.TemporaryDirectory() as folder:
            path = result.save_html(Path(folder) / Path(REPORT_ARTIFACT).name)
            mlflow.log_artifact(str(path), artifact_path=str(Path(REPORT_ARTIFACT).parent))
        return str(run.info.run_id)


def _payload(outcome: MonitoringOutcome, report: str | None) -> dict[str, Any]:
    """The drift event's payload (public interface, see README "Events")."""
    return {
        "model_name": outcome.model_name,
        "model_version": outcome.model_version,
        "window_start": outcome.window_start.isoformat(),
        "window_end": outcome.window_end.isoformat(),
        "drift_share": outcome.drift_share,
        "drifted_features": list(outcome.drifted_features),
        "performance": outcome.performance.to_payload() if outcome.performance else None,
        "predictions": outcome.predictions.to_payload() if outcome.predictions else None,
        "unseen_categories": dict(outcome.unseen_categories),
        "missing_features": dict(outcome.missing_features),
        "segments": {
            segment: {
                "status": result.status,
                "drift_share": result.drift_share,
                "drifted_features": list(result.drifted_columns),
                "current_rows": result.current_rows_total,
            }
            for segment, result in outcome.segments.items()
        },
        "report": report,
        "reason": outcome.reason,
    }


def _reason(found: DriftResult, performance: DecayResult | None) -> str:
    parts = [f"features: {found.reason}"]
    if performance is not None:
        parts.append(f"performance: {performance.reason}")
    return "; ".join(parts)


def _emit_drift_detected(outcome: MonitoringOutcome) -> None:
    emit_event(
        event=events.DRIFT_DETECTED,
        resource=events.model_resource(outcome.model_name),
        payload=_payload(outcome, report=f"{outcome.run_id}/{REPORT_ARTIFACT}"),
    )


@flow(name="monitor-churn-drift", log_prints=True)
def monitor_drift(parameters: MonitoringParameters | None = None) -> Any:
    """Compare the last window with the champion's reference; emit drift, never on bad data."""
    parameters = parameters or MonitoringParameters()
    settings = Settings()
    settings.export_library_environment()  # a worker starts here, not at the CLI
    workspace = Workspace(settings.home_resolved).ensure()
    experiment_id = tracking.connect(
        settings.tracking_uri, settings.mlflow.experiment, workspace.mlflow_artifacts
    )
    end = parameters.as_of or datetime.now(UTC)
    start = end - timedelta(days=parameters.window_days or settings.monitoring.window_days)

    champion = load_champion_reference(settings)
    window = build_current_window(settings, start, end, parameters.population_view)
    if len(window.frame) >= settings.monitoring.min_rows:
        validate_current_window(settings, window)
    found = check_feature_drift(settings, champion, window)
    outcome = MonitoringOutcome(
        status=found.status,
        drift_share=found.drift_share,
        drifted_features=found.drifted_columns,
        run_id=None,
        model_name=champion.model_name,
        model_version=champion.version,
        window_start=start,
        window_end=end,
        reason=found.reason,
        features=found,
    )
    if found.status == drift.NOT_ENOUGH_DATA:
        message = (
            f"No drift check for {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, "
            f"{found.reason}. Choose an `as_of` inside the period the sources cover."
        )
        print(message)
        return Completed(name="NotEnoughData", message=message, data=outcome)

    segments = check_segments(settings, champion, window)
    performance = check_performance(settings, champion, window)
    predictions = check_prediction_drift(settings, champion, window)
    unseen, missing = count_input_problems(settings, champion, window)
    # Segments are reported, not decided on: the verdict is the whole window's.
    drifted = found.drifted or (performance is not None and performance.decayed)
    outcome = replace(
        outcome,
        status=drift.DRIFT if drifted else drift.NO_DRIFT,
        reason=_reason(found, performance),
        performance=performance,
        predictions=predictions,
        segments=segments,
        unseen_categories=unseen,
        missing_features=missing,
    )
    run_id = log_monitoring_run(settings, experiment_id, champion, outcome)
    outcome = replace(outcome, run_id=run_id)
    create_table_artifact(
        key="drift-results", table=found.to_rows(), description="Drift per feature"
    )
    if segments:
        create_table_artifact(
            key="drift-segments",
            table=[
                {
                    "segment": segment,
                    "status": result.status,
                    "drift_share": result.drift_share,
                    "drifted_features": ", ".join(result.drifted_columns),
                    "current_rows": result.current_rows_total,
                }
                for segment, result in segments.items()
            ],
            description=f"Drift per {settings.monitoring.segment_column} segment",
        )
    if drifted:
        _emit_drift_detected(outcome)
    message = f"v{champion.version} {outcome.status.replace('_', ' ')}: {outcome.reason}"
    print(message)
    return Completed(name="Drift" if drifted else "Completed", message=message, data=outcome)
