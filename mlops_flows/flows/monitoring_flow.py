"""Drift monitoring: recent features (and labels) against the champion's reference, one flow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import unmapped

from mlops_flows.adapters import drift
from mlops_flows.adapters.drift import DriftResult, DriftStatus
from mlops_flows.adapters.task_runners import task_runner_for
from mlops_flows.settings import MonitoringSettings, Settings
from mlops_flows.steps import monitoring as steps
from mlops_flows.steps import monitoring_report as report
from mlops_flows.steps.monitoring import (
    ChampionReference,
    CurrentWindow,
    MonitoringOutcome,
    MonitoringParameters,
)
from mlops_flows.steps.start import ended, start

__all__ = ["MonitoringOutcome", "MonitoringParameters", "monitor_drift"]

load_champion_reference = task(cache_policy=NO_CACHE)(steps.load_champion_reference)
build_current_window = task(cache_policy=NO_CACHE)(steps.build_current_window)
validate_current_window = task(cache_policy=NO_CACHE)(steps.validate_current_window)
check_feature_drift = task(cache_policy=NO_CACHE)(steps.check_feature_drift)
check_performance = task(cache_policy=NO_CACHE)(steps.check_performance)
check_prediction_drift = task(cache_policy=NO_CACHE)(steps.check_prediction_drift)
count_input_problems = task(cache_policy=NO_CACHE)(steps.count_input_problems)
log_monitoring_run = task(cache_policy=NO_CACHE)(report.log_monitoring_run)


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
                "categorical": unmapped(steps.categorical_columns(champion, window)),
                "segment_column": unmapped(column),
                "settings": unmapped(settings.monitoring),
            },
        )
        return {segment: future.result() for segment, future in zip(segments, futures, strict=True)}


@flow(name="monitor-churn-drift", log_prints=True)
def monitor_drift(parameters: MonitoringParameters | None = None) -> MonitoringOutcome:
    """Compare the last window with the champion's reference; emit drift, never on bad data."""
    parameters = parameters or MonitoringParameters()
    run = start(experiment=True)
    settings = run.settings
    end = parameters.as_of or datetime.now(UTC)
    start_ = end - timedelta(days=parameters.window_days or settings.monitoring.window_days)

    champion = load_champion_reference(settings)
    window = build_current_window(settings, start_, end, parameters.population_view)
    if len(window.frame) >= settings.monitoring.min_rows:
        validate_current_window(settings, window)
    found = check_feature_drift(settings, champion, window)
    outcome = MonitoringOutcome.of(champion, window, found)
    if found.status is DriftStatus.NOT_ENOUGH_DATA:
        message = (
            f"No drift check for {start_:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, "
            f"{found.reason}. Choose an `as_of` inside the period the sources cover."
        )
        print(message)
        return ended(outcome, "NotEnoughData", message)

    segments = check_segments(settings, champion, window)
    performance = check_performance(settings, champion, window)
    predictions = check_prediction_drift(settings, champion, window)
    unseen, missing = count_input_problems(settings, champion, window)
    # Segments are reported, not decided on: the verdict is the whole window's.
    drifted = found.drifted or (performance is not None and performance.decayed)
    outcome = replace(
        outcome,
        status=DriftStatus.DRIFT if drifted else DriftStatus.NO_DRIFT,
        reason=report.reason_of(found, performance),
        performance=performance,
        predictions=predictions,
        segments=segments,
        unseen_categories=unseen,
        missing_features=missing,
    )
    outcome = replace(
        outcome, run_id=log_monitoring_run(settings, run.experiment_id, champion, outcome)
    )
    create_table_artifact(
        key="drift-results", table=found.to_rows(), description="Drift per feature"
    )
    if outcome.segments:
        create_table_artifact(
            key="drift-segments",
            table=report.segment_rows(outcome),
            description=f"Drift per {settings.monitoring.segment_column} segment",
        )
    if drifted:
        report.emit_drift_detected(outcome)
    message = f"v{champion.version} {outcome.status.replace('_', ' ')}: {outcome.reason}"
    print(message)
    return ended(outcome, "Drift" if drifted else "Completed", message)
