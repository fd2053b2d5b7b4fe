"""The approval flow's steps: wait for a person's decision on one challenger (suspended on a
worker, paused in a local run), authenticate it, then promote or retire the version. A refused
decision is recorded and the run waits for the next; no decision before the deadline counts
as rejected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from mlops_flows.adapters import events
from mlops_flows.registry import decisions, governance
from mlops_flows.registry import versions as registry
from mlops_flows.registry.lock import registry_lock
from mlops_flows.vocabulary import Approval, Tag


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
    decision: Approval  # approved | rejected
    champion: str | None
    message: str


def wait_for_decision(
    client: Any, name: str, version: str, deadline: datetime, poll_seconds: int
) -> ApprovalForm | None:
    """Show the request and wait for the form; None when the deadline passes first. Each
    refused decision opens a new pause (its own key): a resumed run restarts from the top and
    finds the input of the pause it is at."""
    registry.record(client, name, version, {Tag.APPROVAL_FLOW_RUN: events.flow_run_key()})
    create_markdown_artifact(
        key=f"approval-v{version}",
        markdown=(
            f"## Approval of v{version}\n\nDecide before {deadline.isoformat()}: **Resume** this "
            f"run and fill the form, or run `mlops approve {version} --reason ...` / `mlops "
            f"reject {version} --reason ...`. Without a decision the request counts as "
            f"rejected.\n\n{client.get_model_version(name, version).description or ''}\n"
        ),
    )
    refused = decisions.refused_decisions(client, name, version)
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


@dataclass(frozen=True)
class Request:
    """One open approval request and how this run acts on it."""

    client: Any
    name: str
    version: str
    deadline: datetime
    actor: str
    lock_seconds: float
    poll_seconds: int


def authenticated(
    request: Request, approvers: dict[str, Any] | None, decision: ApprovalForm | None
) -> tuple[ApprovalForm, str]:
    """The first decision that authenticates, with its approver as the history records them.
    A refused one is recorded and the run waits for the next (a direct decision fails)."""
    direct = decision is not None
    while True:
        if decision is None:
            decision = wait_for_decision(
                request.client,
                request.name,
                request.version,
                request.deadline,
                request.poll_seconds,
            )
        if decision is None:
            _expire(request)
        signed = decisions.decision_message(
            request.name,
            request.version,
            request.deadline,
            decision.decision,
            decision.approver,
            decision.reason,
        )
        try:
            return decision, decisions.authenticate(
                approvers, signed, decision.approver, decision.signature
            )
        except decisions.UnauthenticatedDecisionError as refusal:
            get_run_logger().error("Decision refused: %s", refusal)
            with registry_lock(request.name, request.lock_seconds):
                decisions.refuse_decision(
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


def _expire(request: Request) -> NoReturn:
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


def decide(request: Request, decision: ApprovalForm, approver: str) -> ApprovalOutcome:
    """Apply an authenticated decision under the registry lock: promote (and tell) or retire."""
    get_run_logger().info("%s decided %s: %s", approver, decision.decision, decision.reason)
    with registry_lock(request.name, request.lock_seconds):
        promotion = governance.decide(
            request.client,
            request.name,
            request.version,
            decision=decision.decision,
            approver=approver,
            reason=decision.reason,
            actor=request.actor,
        )
    version = request.version
    if promotion is None:
        message = f"v{version} rejected by {approver}: {decision.reason}"
        return ApprovalOutcome(version, Approval.REJECTED, None, message)
    events.emit(
        events.MODEL_PROMOTED,
        request.name,
        {"version": version, "previous_version": promotion.previous},
    )
    message = f"v{version} approved by {approver} and promoted to champion"
    return ApprovalOutcome(version, Approval.APPROVED, version, message)
