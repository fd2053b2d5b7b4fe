"""Approval before production: a run that waits for a person's decision on one challenger.

Under a deployment the run suspends: it exits and frees its worker until someone submits the
form in the Prefect UI or runs `mlops approve|reject`; Prefect then starts it again from the top
and `suspend_flow_run` hands back the decision. A local run (no deployment) pauses in place.
The deployed flow takes no decision as a parameter: a decision reaches it only as the input of
its paused or suspended run. `decide_churn_model`, never deployed, applies a decision the CLI
was given where no run waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed
from pydantic import Field

from flows import events, governance
from flows.registry_lock import registry_lock
from flows.settings import Settings


class ApprovalForm(RunInput):
    """The form shown in the Prefect UI. Nothing is pre-filled, so nothing approves by default."""

    decision: governance.Decision = Field(
        description="`approve` makes this version the champion; `reject` retires it."
    )
    approver: str = Field(min_length=1, description="Who decides (name or e-mail).")
    reason: str = Field(min_length=1, description="Why; kept in the audit history.")


@dataclass(frozen=True)
class ApprovalOutcome:
    """What the decision did to the registry."""

    version: str
    decision: str  # approved | rejected
    champion: str | None
    message: str


def _wait_for_decision(
    client: Any, name: str, version: str, deadline: datetime, poll_seconds: int
) -> ApprovalForm | None:
    """Show the request and wait for the form; None when the deadline passes first."""
    client.set_model_version_tag(
        name, version, governance.APPROVAL_FLOW_RUN, str(flow_run.get_id())
    )
    create_markdown_artifact(
        key=f"approval-v{version}",
        markdown=(
            f"## Approval of v{version}\n\nDecide before {deadline.isoformat()}: **Resume** this "
            f"run and fill the form, or run `mlops approve {version} --reason ...` / `mlops "
            f"reject {version} --reason ...`. Without a decision the request counts as "
            f"rejected.\n\n{client.get_model_version(name, version).description or ''}\n"
        ),
    )
    seconds, key = int((deadline - governance.now_utc()).total_seconds()), f"approval-v{version}"
    try:
        if seconds <= 0:
            return None
        if _deployed():  # exit and free the worker until the form comes
            return suspend_flow_run(wait_for_input=ApprovalForm, timeout=seconds, key=key)
        return pause_flow_run(
            wait_for_input=ApprovalForm, timeout=seconds, poll_interval=poll_seconds, key=key
        )
    except FlowPauseTimeout:
        return None


def _deployed() -> bool:
    """Whether this very run (not a parent) belongs to a deployment, which suspending needs."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


@flow(name="approve-churn-model", log_prints=True)
def approve_churn_model(version: str) -> Any:
    """Wait for a person's decision on a challenger, then promote it or retire it."""
    return _approval(version, None)


@flow(name="decide-churn-model", log_prints=True)
def decide_churn_model(version: str, decision: ApprovalForm) -> Any:
    """Apply a decision on a challenger no approval run waits for (`mlops approve|reject` with
    local runs). Not deployed: no API call can start it with a decision."""
    return _approval(version, decision)


def _approval(version: str, decision: ApprovalForm | None) -> Any:
    settings = Settings()
    settings.export_library_environment()  # a worker starts here, not at the CLI
    from mlflow import MlflowClient

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    actor = f"prefect-flow-run:{flow_run.get_id() or 'local'}"
    lock = settings.governance.lock_timeout_seconds
    deadline = governance.open_request(client, name, version)
    if decision is None:
        poll = settings.governance.approval_poll_seconds
        decision = _wait_for_decision(client, name, version, deadline, poll)
    if decision is None:
        with registry_lock(name, lock):
            governance.expire(client, name, version, actor=actor, now=governance.now_utc())
        # Prefect fails a run whose pause timed out whatever it returns; say why it failed.
        raise governance.ApprovalExpiredError(
            f"No decision on v{version} before {deadline.isoformat()}: recorded as timed out "
            "(rejected). The champion is unchanged; retrain to ask again."
        )

    logger = get_run_logger()
    logger.info("%s decided %s: %s", decision.approver, decision.decision, decision.reason)
    with registry_lock(name, lock):
        promotion = governance.decide(
            client,
            name,
            version,
            decision=decision.decision,
            approver=decision.approver,
            reason=decision.reason,
            actor=actor,
        )
    if promotion is None:
        message = f"v{version} rejected by {decision.approver}: {decision.reason}"
        print(message)
        outcome = ApprovalOutcome(version, "rejected", None, message)
        return Completed(name="Rejected", message=message, data=outcome)
    emit_event(
        event=events.MODEL_PROMOTED,
        resource=events.model_resource(name),
        payload={"version": version, "previous_version": promotion.previous},
    )
    message = f"v{version} approved by {decision.approver} and promoted to champion"
    print(message)
    return ApprovalOutcome(version, "approved", version, message)
