"""Rollback: put an earlier champion back in one step, record it, tell, and redeploy it."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from pydantic import Field

from mlops_flows.adapters import events
from mlops_flows.flows.redeploy_flow import RedeployParameters, redeploy
from mlops_flows.ops.runtime import FlowParameters
from mlops_flows.registry import governance
from mlops_flows.registry.lock import registry_lock
from mlops_flows.steps.start import start


class RollbackParameters(FlowParameters):
    """Which version to restore, who asks and why."""

    requested_by: str = Field(min_length=1, description="Who asks for the rollback.")
    reason: str = Field(min_length=1, description="Why; kept in the audit history.")
    to_version: str | None = Field(
        default=None,
        description="Version to restore; empty means the most recent earlier champion that "
        "passed its gates and was not rolled back.",
    )
    redeploy: bool = Field(
        default=True,
        description="Then redeploy the restored version: online features, service reload, "
        "smoke check (a failure there does not roll back any further).",
    )


@dataclass(frozen=True)
class RollbackOutcome:
    """Where `champion` points now, and where it pointed before."""

    restored_version: str
    rolled_back_version: str | None
    redeployed: bool


@flow(name="rollback-churn-model", log_prints=True)
def rollback_churn_model(parameters: RollbackParameters) -> RollbackOutcome:
    """Move `champion` back to an earlier approved version, then redeploy it."""
    settings = start(signs=True).settings
    from mlflow import MlflowClient

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    actor = f"{parameters.requested_by} via {events.actor()}"
    with registry_lock(name, settings.governance.lock_timeout_seconds):
        promotion = governance.rollback(
            client, name, to=parameters.to_version, actor=actor, reason=parameters.reason
        )
    print(
        f"champion v{promotion.previous} rolled back to v{promotion.version}: {parameters.reason}"
    )
    events.emit(
        events.MODEL_ROLLED_BACK,
        name,
        {
            "version": promotion.previous,
            "restored_version": promotion.version,
            "reason": parameters.reason,
        },
    )
    if parameters.redeploy:
        # No `previous_version`: if the restored version fails its smoke check, it stays champion
        # and the run fails, rather than rolling forward to the version just taken out.
        redeploy(RedeployParameters(version=promotion.version))
    return RollbackOutcome(promotion.version, promotion.previous, parameters.redeploy)
