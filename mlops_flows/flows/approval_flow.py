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
from typing import Any, NoReturn

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed
from pydantic import Field

from mlops_flows.adapters import events
from mlops_flows.registry import governance, history
from mlops_flows.registry import versions as registry
from mlops_flows.registry.lock import registry_lock
from mlops_flows.settings import Settings
from mlops_flows.vocabulary import Tag


class ApprovalForm(RunInput):
    """The form shown in the Prefect UI. Nothing is pre-filled, so nothing approves by default."""

    decision: governance.Decision = Field(
        description="`approve` makes this version the champion; `reject` retires it."
    )
    approver: str = Field(min_length=1, description="Who decides (name or e-mail).")
    reason: str = Field(min_length=1, description="Why; kept in the audit history.")
    signature: str = Field(
        default="",
        description="The approver's signature of this decision (`mlops approve|reject --key` "
        "makes it); required where the worker has an approvers file (production).",
    )


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
    """Show the request and wait for the form; None when the deadline passes first. Each
    refused decision opens a new pause (its own key): a resumed run restarts from the top and
    finds the input of the pause it is at."""
    registry.record(client, name, version, {Tag.APPROVAL_FLOW_RUN: str(flow_run.get_id())})
    create_markdown_artifact(
        key=f"approval-v{version}",
        markdown=(
            f"## Approval of v{version}\n\nDecide before {deadline.isoformat()}: **Resume** this "
            f"run and fill the form, or run `mlops approve {version} --reason ...` / `mlops "
            f"reject {version} --reason ...`. Without a decision the request counts as "
            f"rejected.\n\n{client.get_model_version(name, version).description or ''}\n"
        ),
    )
    refused = governance.refused_decisions(client, name, version)
    key = f"approval-v{version}" + (f"-{refused}" if refused else "")
    seconds = int((deadline - governance.now_utc()).total_seconds())
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


@dataclass(frozen=True)
class _Request:
    """One open approval request and how this run acts on it."""

    client: Any
    name: str
    version: str
    deadline: datetime
    actor: str
    lock_seconds: float
    poll_seconds: int


def _authenticated(
    request: _Request, approvers: dict[str, Any] | None, decision: ApprovalForm | None
) -> tuple[ApprovalForm, str]:
    """The first decision that authenticates, with its approver as the history records them.
    A refused one is recorded and the run waits for the next (a direct decision fails)."""
    direct = decision is not None
    while True:
        if decision is None:
            decision = _wait_for_decision(
                request.client,
                request.name,
                request.version,
                request.deadline,
                request.poll_seconds,
            )
        if decision is None:
            _expire(request)
        signed = governance.decision_message(
            request.name,
            request.version,
            request.deadline,
            decision.decision,
            decision.approver,
            decision.reason,
        )
        try:
            return decision, governance.authenticate(
                approvers, signed, decision.approver, decision.signature
            )
        except governance.UnauthenticatedDecisionError as refusal:
            get_run_logger().error("Decision refused: %s", refusal)
            with registry_lock(request.name, request.lock_seconds):
                governance.refuse_decision(
                    request.client,
                    request.name,
                    request.version,
                    claimed=decision.approver,
                    reason=str(refusal),
                    actor=request.actor,
                )
            if direct:
                raise
            decision = None


def _expire(request: _Request) -> NoReturn:
    with registry_lock(request.name, request.lock_seconds):
        governance.expire(
            request.client,
            request.name,
            request.version,
            actor=request.actor,
            now=governance.now_utc(),
        )
    # Prefect fails a run whose pause timed out whatever it returns; say why it failed.
    raise governance.ApprovalExpiredError(
        f"No decision on v{request.version} before {request.deadline.isoformat()}: recorded as "
        "timed out (rejected). The champion is unchanged; retrain to ask again."
    )


def _approval(version: str, decision: ApprovalForm | None) -> Any:
    settings = Settings()
    settings.export_library_environment()  # a worker starts here, not at the CLI
    history.signer(settings)  # without the governance key in production: stop before any change
    approvers = governance.approvers(settings)
    from mlflow import MlflowClient

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    actor = f"prefect-flow-run:{flow_run.get_id() or 'local'}"
    lock = settings.governance.lock_timeout_seconds
    request = _Request(
        client,
        name,
        version,
        governance.open_request(client, name, version),
        actor,
        lock,
        settings.governance.approval_poll_seconds,
    )
    decision, approver = _authenticated(request, approvers, decision)

    get_run_logger().info("%s decided %s: %s", approver, decision.decision, decision.reason)
    with registry_lock(name, lock):
        promotion = governance.decide(
            client,
            name,
            version,
            decision=decision.decision,
            approver=approver,
            reason=decision.reason,
            actor=actor,
        )
    if promotion is None:
        message = f"v{version} rejected by {approver}: {decision.reason}"
        print(message)
        outcome = ApprovalOutcome(version, "rejected", None, message)
        return Completed(name="Rejected", message=message, data=outcome)
    emit_event(
        event=events.MODEL_PROMOTED,
        resource=events.model_resource(name),
        payload={"version": version, "previous_version": promotion.previous},
    )
    message = f"v{version} approved by {approver} and promoted to champion"
    print(message)
    return ApprovalOutcome(version, "approved", version, message)
