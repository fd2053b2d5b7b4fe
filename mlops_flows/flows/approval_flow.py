"""Approval before production: a run that waits for a person's decision on one challenger.

Under a deployment the run suspends: it exits and frees its worker until someone submits the
form in the Prefect UI or runs `mlops approve|reject`; Prefect then starts it again from the top
and `suspend_flow_run` hands back the decision. A local run (no deployment) pauses in place.
The deployed flow takes no decision as a parameter: a decision reaches it only as the input of
its paused or suspended run. `decide_churn_model`, never deployed, applies a decision the CLI
was given where no run waits.
"""

from __future__ import annotations

from prefect import flow

from mlops_flows.adapters import events
from mlops_flows.registry import decisions, governance
from mlops_flows.steps.approval import (
    ApprovalForm,
    ApprovalOutcome,
    Request,
    authenticated,
    decide,
)
from mlops_flows.steps.start import ended, start
from mlops_flows.vocabulary import Approval

__all__ = ["ApprovalForm", "ApprovalOutcome", "approve_churn_model", "decide_churn_model"]


@flow(name="approve-churn-model", log_prints=True)
def approve_churn_model(version: str) -> ApprovalOutcome:
    """Wait for a person's decision on a challenger, then promote it or retire it."""
    return _approval(version, None)


@flow(name="decide-churn-model", log_prints=True)
def decide_churn_model(version: str, decision: ApprovalForm) -> ApprovalOutcome:
    """Apply a decision on a challenger no approval run waits for (`mlops approve|reject` with
    local runs). Not deployed: no API call can start it with a decision."""
    return _approval(version, decision)


def _approval(version: str, decision: ApprovalForm | None) -> ApprovalOutcome:
    settings = start(signs=True).settings
    approvers = decisions.approvers(settings)
    from mlflow import MlflowClient

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    request = Request(
        client,
        name,
        version,
        governance.open_request(client, name, version),
        events.actor(),
        settings.governance.lock_timeout_seconds,
        settings.governance.approval_poll_seconds,
    )
    decision, approver = authenticated(request, approvers, decision)
    outcome = decide(request, decision, approver)
    print(outcome.message)
    if outcome.decision is Approval.REJECTED:
        return ended(outcome, "Rejected", outcome.message)
    return outcome
