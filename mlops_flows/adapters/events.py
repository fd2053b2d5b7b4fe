"""Event names and resources: part of the public interface (see README, "Events")."""

from __future__ import annotations

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
