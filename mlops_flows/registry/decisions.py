"""Signed decisions: who may approve or reject, with which key, and what they sign.

On the production profile a decision counts only when it verifies with its approver's Ed25519
key from the approvers file; a refused one is recorded in the audit history and the request
stays open.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from mlops_flows.registry.governance import GovernanceError, stamp
from mlops_flows.registry.history import Action, Entry, append, read

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_flows.registry.signing import PublicKey
    from mlops_flows.settings import Settings

APPROVERS = "MLOPS_GOVERNANCE__APPROVERS_FILE"
SIGNED_DECISION = b"mlops-decision-v1:"


class UnauthenticatedDecisionError(GovernanceError):
    """A decision not signed by the key the approvers file lists for its approver."""


def approvers(settings: Settings) -> dict[str, PublicKey] | None:
    """Who may decide and with which key; None (free-text approvers) on the local profile
    without an approvers file, an error on the production profile without one."""
    from mlops_flows.registry.signing import load_approvers

    path = settings.governance.approvers_file
    if path is None:
        if settings.is_production:
            raise UnauthenticatedDecisionError(
                f"The production profile accepts only signed decisions: set {APPROVERS} to a "
                "file of `<name> ssh-ed25519 AAAA...` lines, one per approver, on the worker. "
                "Nothing was changed."
            )
        return None
    return load_approvers(path, APPROVERS)


def decision_message(
    name: str, version: str, deadline: datetime, decision: str, approver: str, reason: str
) -> bytes:
    """What an approver signs: this decision on this request (the version's approval deadline
    tells requests apart), so a signature cannot be replayed onto another."""
    body = {
        "model": name,
        "version": version,
        "request": stamp(deadline),
        "decision": decision,
        "approver": approver,
        "reason": reason,
    }
    return SIGNED_DECISION + json.dumps(body, sort_keys=True).encode()


def authenticate(
    approvers: dict[str, PublicKey] | None, message: bytes, approver: str, signature: str
) -> str:
    """The approver as the history records them: `<name> (key SHA256:...)` once the signature
    verifies with that name's key; the free text where no approvers are configured."""
    if approvers is None:
        return approver
    key = approvers.get(approver)
    if key is None:
        raise UnauthenticatedDecisionError(
            f"{approver!r} is not an approver (listed: {', '.join(sorted(approvers))}): the "
            "decision was refused and the request is still open."
        )
    if not signature:
        raise UnauthenticatedDecisionError(
            f"The decision of {approver!r} is not signed: decide with `mlops approve|reject "
            "--key <your key>`. It was refused and the request is still open."
        )
    if not key.verifies(message, signature):
        raise UnauthenticatedDecisionError(
            f"The signature does not verify with {approver!r}'s key {key.fingerprint} for this "
            "decision on this request: it was refused and the request is still open."
        )
    return f"{approver} (key {key.fingerprint})"


def refuse_decision(
    client: MlflowClient, name: str, version: str, *, claimed: str, reason: str, actor: str
) -> None:
    """Record a decision that did not authenticate; the request stays open."""
    evidence = {"claimed_approver": claimed}
    append(client, name, Entry(Action.DECISION_REFUSED, version, actor, reason, evidence=evidence))


def refused_decisions(client: MlflowClient, name: str, version: str) -> int:
    return sum(entry.action == Action.DECISION_REFUSED for entry in read(client, name, version))
