"""Prefect events and the running flow run: event names and resources are part of the public
interface (see docs/operations.md, "Events"); emitting, and who acts, for the audit history."""

from __future__ import annotations

from typing import Any

DATA_INVALID = "mlops.data.invalid"
MODEL_REGISTERED = "mlops.model.registered"
APPROVAL_REQUESTED = "mlops.model.approval_requested"
MODEL_PROMOTED = "mlops.model.promoted"
MODEL_ROLLED_BACK = "mlops.model.rolled_back"
DRIFT_DETECTED = "mlops.drift.detected"


def model_resource(model_name: str) -> dict[str, str]:
    """Every event names the registered model it is about as its resource."""
    return {
        "prefect.resource.id": f"mlops.model.{model_name}",
        "prefect.resource.name": model_name,
        "prefect.resource.role": "model",
    }


def emit(event: str, model_name: str, payload: dict[str, Any]) -> None:
    """Emit `event` about the registered model `model_name` (its resource)."""
    from prefect.events import emit_event

    emit_event(event=event, resource=model_resource(model_name), payload=payload)


def flow_run_key() -> str:
    """The running flow run's id, `local` outside one: a retried run finds what it did by it."""
    from prefect.runtime import flow_run

    return str(flow_run.get_id() or "local")


def actor(role: str = "prefect-flow-run") -> str:
    """Who acts, for the audit history: the role and the flow run."""
    return f"{role}:{flow_run_key()}"
