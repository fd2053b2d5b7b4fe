"""The monitoring flow's steps: the champion's reference, the current window of features, its
validation, and the checks (feature drift, performance decay on arrived labels, served
predictions, inputs the model never saw)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import get_run_logger
from pydantic import Field

from mlops_flows.adapters import batch_scoring, drift, features
from mlops_flows.adapters.drift import DriftResult, DriftStatus
from mlops_flows.adapters.validation import ValidationResult
from mlops_flows.logic import decay, training
from mlops_flows.logic.decay import DecayResult
from mlops_flows.logic.keys import keys_of
from mlops_flows.logic.times import UtcDatetime, to_utc
from mlops_flows.ops.runtime import FlowParameters
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import versions as registry
from mlops_flows.serving import scoring
from mlops_flows.serving.contract import PredictionLog
from mlops_flows.settings import Settings
from mlops_flows.steps.data_checks import check_or_stop

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
    population_view: str | None = Field(
        default=None,
        description="Feature view whose source file lists the entities to compare; empty: the "
        "use case's (features.population_view).",
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

    status: DriftStatus
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

    @classmethod
    def of(
        cls, champion: ChampionReference, window: CurrentWindow, found: DriftResult
    ) -> MonitoringOutcome:
        """The outcome of the feature check alone, before the others and the MLflow run."""
        return cls(
            status=found.status,
            drift_share=found.drift_share,
            drifted_features=found.drifted_columns,
            run_id=None,
            model_name=champion.model_name,
            model_version=champion.version,
            window_start=window.start,
            window_end=window.end,
            reason=found.reason,
            features=found,
        )


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


def build_current_window(
    settings: Settings, start: datetime, end: datetime, population_view: str | None
) -> CurrentWindow:
    """Features of every known customer at 00:00 of each day the sources cover in the window."""
    key, stamp = settings.features.entity_key, settings.features.timestamp_column
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    features.check_sources(store, service)
    names = features.feature_names(service)
    days = drift.window_midnights(start, end, *_observed_span(store, service))
    path, timestamp_field = batch_scoring.population_source(
        store, settings.population_view(population_view)
    )
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
        column = pq.read_table(
            features.source_path(store, source), columns=[source.timestamp_field]
        ).column(0)
        bounds = pc.min_max(column)
        for bound in ("min", "max"):
            value = bounds[bound].as_py()
            if value is not None:
                stamps.append(to_utc(value))
    return (min(stamps), max(stamps)) if stamps else (None, None)


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


def categorical_columns(champion: ChampionReference, window: CurrentWindow) -> list[str]:
    return [
        column
        for column in window.feature_columns
        if column in champion.reference.columns
        and not pd.api.types.is_numeric_dtype(champion.reference[column])
    ]


def check_feature_drift(
    settings: Settings, champion: ChampionReference, window: CurrentWindow
) -> DriftResult:
    """Evidently's per-feature tests, current window against the champion's reference."""
    return drift.check_drift(
        champion.reference,
        window.frame,
        window.feature_columns,
        categorical_columns(champion, window),
        settings.monitoring,
    )


def _load_model(settings: Settings, champion: ChampionReference) -> Any:
    # The version, not the alias: the alias may move while this run reads.
    return registry.load_version(settings.tracking_uri, champion.model_name, champion.version)


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
    return decay.performance_decay(
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
