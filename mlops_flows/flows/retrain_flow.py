"""Retraining on `mlops.drift.detected`: check the event's payload, then run the training flow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field, ValidationError

from mlops_flows.errors import MlopsError
from mlops_flows.flows.training_flow import (
    TrainingOutcome,
    TrainingParameters,
    train_churn_model,
)
from mlops_flows.steps.start import start


class DriftEventError(MlopsError, ValueError):
    """The triggering event lacks a field or names another model."""


class DriftEvent(BaseModel):
    """The fields of a drift event the retraining needs; an unset template renders as ''."""

    event_id: str = Field(min_length=1)
    model_name: str = Field(min_length=1)
    window_end: datetime
    drift_share: float | None = None
    reason: str = ""


def parse_drift_event(fields: dict[str, Any], model_name: str) -> DriftEvent:
    """Validate the templated event fields; name the first bad field in the error."""
    try:
        event = DriftEvent.model_validate(fields)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise DriftEventError(
            f"Drift event field '{field}' is missing or invalid ({problem['msg']}; got "
            f"{fields.get(field)!r}). Emit `mlops.drift.detected` with payload fields "
            "model_name, model_version, window_end (see docs/operations.md, Events)."
        ) from None
    if event.model_name != model_name:
        raise DriftEventError(
            f"Drift event field 'model_name' names '{event.model_name}', but this deployment "
            f"retrains '{model_name}' (MLOPS_MLFLOW__MODEL_NAME)."
        )
    return event


@flow(name="retrain-on-drift")
def retrain_on_drift(
    event_id: str = "",
    model_name: str = "",
    model_version: str = "",
    window_end: str = "",
    drift_share: float | str | None = None,
    reason: str = "",
) -> TrainingOutcome:
    """Retrain on the drifted window; the training flow gates and registers as usual."""
    settings = start().settings
    event = parse_drift_event(
        {
            "event_id": event_id,
            "model_name": model_name,
            "window_end": window_end,
            "drift_share": drift_share if drift_share != "" else None,
            "reason": reason,
        },
        settings.mlflow.model_name,
    )
    get_run_logger().info(
        "Retraining %s (champion v%s drifted: %s) on labels up to %s",
        event.model_name,
        model_version or "?",
        event.reason or "drift",
        event.window_end,
    )
    return train_churn_model(
        TrainingParameters(
            as_of=event.window_end,
            window_days=settings.training.retrain_window_days,
            reason=f"drift:{event.event_id}",
        )
    )
