"""The monitoring run's record: one MLflow run (the HTML report, per-feature scores, summary
metrics) and the drift event's payload (public interface, see docs/operations.md, "Events")."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from mlops_flows.adapters import events
from mlops_flows.adapters.drift import DriftResult, DriftStatus
from mlops_flows.logic.decay import DecayResult
from mlops_flows.settings import Settings
from mlops_flows.steps.monitoring import (
    REPORT_ARTIFACT,
    SCORE_COLUMN,
    ChampionReference,
    MonitoringOutcome,
)


def log_monitoring_run(
    settings: Settings,
    experiment_id: str,
    champion: ChampionReference,
    outcome: MonitoringOutcome,
) -> str:
    """One MLflow run: the HTML report, per-feature scores and the summary metrics."""
    found = outcome.features
    metrics: dict[str, float] = {
        "drift_detected": float(outcome.status is DriftStatus.DRIFT),
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
    """The drift event's payload (public interface, see docs/operations.md, "Events")."""
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


def reason_of(found: DriftResult, performance: DecayResult | None) -> str:
    parts = [f"features: {found.reason}"]
    if performance is not None:
        parts.append(f"performance: {performance.reason}")
    return "; ".join(parts)


def emit_drift_detected(outcome: MonitoringOutcome) -> None:
    events.emit(
        events.DRIFT_DETECTED,
        outcome.model_name,
        _payload(outcome, report=f"{outcome.run_id}/{REPORT_ARTIFACT}"),
    )


def segment_rows(outcome: MonitoringOutcome) -> list[dict[str, Any]]:
    """Drift per segment, a row each, for the run's table artifact."""
    return [
        {
            "segment": segment,
            "status": result.status,
            "drift_share": result.drift_share,
            "drifted_features": ", ".join(result.drifted_columns),
            "current_rows": result.current_rows_total,
        }
        for segment, result in outcome.segments.items()
    ]
