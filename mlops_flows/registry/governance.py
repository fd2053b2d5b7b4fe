"""Registry decisions and their rules: compare-and-set promotion, approval, expiry, rollback.

Plain functions over an MlflowClient. Callers hold the registry lock (`mlops_flows.registry.lock`)
around them, so that reading the champion and moving it is one step for every worker.
Every decision is written to the audit history (`mlops_flows.registry.history`) and to the
version's tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from mlops_flows import vocabulary
from mlops_flows.errors import MlopsError
from mlops_flows.registry import card
from mlops_flows.registry import versions as registry
from mlops_flows.registry.history import Action, Entry, append, has
from mlops_flows.vocabulary import Approval, Status, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient


ROLLBACK_REASON = "rollback: "  # how a rollback's promotion reason starts


class GovernanceError(MlopsError):
    """A registry decision was refused; the message says why. Nothing was changed."""


class StaleChampionError(GovernanceError):
    """The version may not replace the champion: the champion moved after the version was
    compared with it, or it was trained from the same request."""


class NotAwaitingApprovalError(GovernanceError):
    """The version has no open approval request."""


class ApprovalExpiredError(GovernanceError):
    """The approval window closed; the request was recorded as timed out."""


class RollbackRefusedError(GovernanceError):
    """The rollback target may not serve."""


class Decision(StrEnum):
    """A person's answer to an approval request."""

    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class Promotion:
    """Where `champion` points after a decision, and where it pointed before."""

    version: str
    previous: str | None
    moved: bool  # False when the version already was champion (a retried run)


def now_utc() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """The version's tags, or an error that lists the versions that exist."""
    from mlflow.exceptions import MlflowException

    try:
        return registry.read_facts(client, name, version)
    except MlflowException as error:
        known = sorted(
            (int(found.version) for found in client.search_model_versions(f"name='{name}'")),
        )
        raise GovernanceError(
            f"Model '{name}' has no version {version!r} (versions: "
            f"{', '.join(map(str, known)) or 'none'})."
        ) from error


def _refresh_cards(client: MlflowClient, name: str, *versions: str | None) -> None:
    """Rewrite the model card of every version whose tags a decision changed."""
    for version in versions:
        if version is not None:
            card.refresh(client, name, version)


def _drop_challenger(client: MlflowClient, name: str, version: str) -> None:
    if registry.aliases(client, name).get(registry.CHALLENGER) == version:
        client.delete_registered_model_alias(name, registry.CHALLENGER)


def tagged_version(tags: dict[str, str], key: str) -> str | None:
    """A version kept in a tag, where `none` (or no tag) means there was none."""
    value = tags.get(key, "none")
    return None if value == "none" else value


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> Promotion:
    """Move `champion` to the version only if it still points where the version was compared
    (compare-and-set) and is not the same request; a retry after the move changes nothing."""
    tags, evidence = version_tags(client, name, version), evidence or {}
    current = registry.champion_version(client, name)
    if current == version:
        previous = tagged_version(tags, Tag.PREVIOUS_CHAMPION)
        if not has(client, name, Action.PROMOTED, version):  # the run stopped before writing it
            entry = Entry(Action.PROMOTED, version, actor, reason, previous, version, evidence)
            append(client, name, entry)
        return Promotion(version, previous, moved=False)
    refusal = _refusal(client, name, version, tags, current)
    if refusal is not None:
        superseded = {Tag.STATUS: Status.SUPERSEDED, Tag.STATUS_REASON: refusal}
        registry.record(client, name, version, superseded)
        _drop_challenger(client, name, version)
        entry = Entry(Action.PROMOTION_REFUSED, version, actor, refusal, current, None, evidence)
        append(client, name, entry)
        _refresh_cards(client, name, version)
        raise StaleChampionError(refusal)
    moved_from = registry.promote(client, name, version, actor, reason)
    entry = Entry(Action.PROMOTED, version, actor, reason, moved_from, version, evidence)
    append(client, name, entry)
    _refresh_cards(client, name, version, moved_from)
    return Promotion(version, moved_from, moved=True)


def _refusal(
    client: MlflowClient, name: str, version: str, tags: dict[str, str], current: str | None
) -> str | None:
    """Why the version may not replace the current champion, or None."""
    expected = tagged_version(tags, Tag.EVALUATED_AGAINST)
    if current != expected:
        return (
            f"v{version} was compared with champion v{expected or 'none'}, but the champion is "
            f"now v{current or 'none'} (promoted meanwhile, e.g. by a concurrent run). Retrain "
            "or re-run its gates against the current champion. The champion was not changed."
        )
    key = tags.get(Tag.REQUEST_KEY)
    if (
        current is not None
        and key
        and version_tags(client, name, current).get(Tag.REQUEST_KEY) == key
    ):
        return (
            f"v{version} was trained from the same data, features, code, lock and parameters as "
            f"champion v{current} (a duplicate request, e.g. concurrent retrains of one window). "
            "The champion was not changed."
        )
    return None


def request_approval(
    client: MlflowClient, name: str, version: str, *, deadline: datetime, actor: str
) -> None:
    """Mark a gated challenger as waiting for a person, until the deadline."""
    pending = {Tag.APPROVAL: Approval.PENDING, Tag.APPROVAL_DEADLINE: stamp(deadline)}
    registry.record(client, name, version, pending)
    entry = Entry(
        Action.APPROVAL_REQUESTED,
        version,
        actor,
        f"gates passed; policy manual: approve or reject before {stamp(deadline)}",
        registry.champion_version(client, name),
        version,
    )
    append(client, name, entry)
    _refresh_cards(client, name, version)


def open_request(client: MlflowClient, name: str, version: str) -> datetime:
    """The deadline of the version's pending approval, or an error saying why there is none."""
    tags = version_tags(client, name, version)
    state = tags.get(Tag.APPROVAL)
    if state != Approval.PENDING:
        raise NotAwaitingApprovalError(
            f"v{version} of '{name}' is not awaiting approval (approval: "
            f"{state or 'never requested'}; status: {tags.get('status', 'unknown')}). Nothing "
            "was changed."
        )
    return datetime.fromisoformat(tags[Tag.APPROVAL_DEADLINE])


def decide(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    decision: Decision,
    approver: str,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> Promotion | None:
    """Apply a person's decision; an approval promotes (compare-and-set), a rejection retires
    the challenger. A decision after the deadline records the timeout instead."""
    deadline, now = open_request(client, name, version), now or now_utc()
    if now > deadline:
        expire(client, name, version, actor=actor, now=now)
        raise ApprovalExpiredError(
            f"The approval window of v{version} closed at {stamp(deadline)}; the request was "
            "recorded as timed out (rejected). Retrain to ask again."
        )
    evidence = {"approver": approver, "via": actor}
    decided = {
        Tag.APPROVAL: Approval.APPROVED if decision is Decision.APPROVE else Approval.REJECTED,
        Tag.DECIDED_BY: approver,
        Tag.DECIDED_AT: stamp(now),
        Tag.DECISION_REASON: reason,
    }
    registry.record(client, name, version, decided)
    if decision is Decision.REJECT:
        rejected = {Tag.STATUS: Status.REJECTED, Tag.STATUS_REASON: reason}
        registry.record(client, name, version, rejected)
        _drop_challenger(client, name, version)
        entry = Entry(
            Action.APPROVAL_REJECTED,
            version,
            approver,
            reason,
            registry.champion_version(client, name),
            None,
            evidence,
        )
        append(client, name, entry)
        _refresh_cards(client, name, version)
        return None
    append(client, name, Entry(Action.APPROVED, version, approver, reason, None, version, evidence))
    return promote(
        client, name, version, actor=approver, reason=f"approved: {reason}", evidence=evidence
    )


def expire(client: MlflowClient, name: str, version: str, *, actor: str, now: datetime) -> None:
    """Record that nobody decided in time: the request counts as rejected."""
    reason = f"no decision before the approval deadline (checked {stamp(now)})"
    timed_out = {
        Tag.APPROVAL: Approval.TIMED_OUT,
        Tag.STATUS: Status.REJECTED,
        Tag.STATUS_REASON: reason,
    }
    registry.record(client, name, version, timed_out)
    _drop_challenger(client, name, version)
    append(client, name, Entry(Action.APPROVAL_TIMED_OUT, version, actor, reason))
    _refresh_cards(client, name, version)


def expire_overdue(
    client: MlflowClient, name: str, *, actor: str, now: datetime | None = None
) -> list[str]:
    """Record every pending request whose deadline has passed; return their versions."""
    now = now or now_utc()
    expired = []
    for found in client.search_model_versions(
        f"name='{name}' and tag.{Tag.APPROVAL}='{Approval.PENDING}'"
    ):
        deadline = datetime.fromisoformat(vocabulary.flatten(found.tags)[Tag.APPROVAL_DEADLINE])
        if now > deadline:
            expire(client, name, str(found.version), actor=actor, now=now)
            expired.append(str(found.version))
    return expired


def _may_serve(version: str, tags: dict[str, str]) -> str | None:
    """Why the version may not be restored, or None."""
    if tags.get(Tag.GATES_PASSED) != "true":
        return (
            f"v{version} never passed its gates (status: {tags.get('status', 'unknown')}); "
            "only a version that passed them may serve"
        )
    if Tag.PROMOTED_AT not in tags:
        return (
            f"v{version} was never champion, so restoring it is not a rollback; approve it "
            f"instead (`mlops approve {version}`)"
        )
    return None


def rollback_target(client: MlflowClient, name: str, current: str, requested: str | None) -> str:
    """The named version if it may serve, else the most recent earlier champion that may."""
    if requested is not None:
        if requested == current:
            raise RollbackRefusedError(
                f"v{requested} already is the champion. Nothing was changed."
            )
        refusal = _may_serve(requested, version_tags(client, name, requested))
        if refusal is not None:
            raise RollbackRefusedError(f"Rollback refused: {refusal}. Nothing was changed.")
        return requested
    tags = version_tags(client, name, current)
    if tags.get(Tag.PROMOTION_REASON, "").startswith(ROLLBACK_REASON):
        raise RollbackRefusedError(
            f"Champion v{current} is itself a rollback (from v{tags.get(Tag.PREVIOUS_CHAMPION)}): "
            "a second rollback without a target would go one more version back. Name the "
            "version to restore (--to). Nothing was changed."
        )
    recorded = {
        str(found.version): vocabulary.flatten(found.tags)
        for found in client.search_model_versions(f"name='{name}'")
    }
    earlier = [
        (facts[Tag.PROMOTED_AT], version)
        for version, facts in recorded.items()
        if version != current
        and facts.get(Tag.STATUS) != Status.ROLLED_BACK
        and _may_serve(version, facts) is None
    ]
    if not earlier:
        raise RollbackRefusedError(
            f"Model '{name}' has no earlier champion that passed its gates to roll back to "
            f"(champion v{current}). Nothing was changed."
        )
    return max(earlier)[1]


def rollback(
    client: MlflowClient,
    name: str,
    *,
    to: str | None,
    actor: str,
    reason: str,
    expected_current: str | None = None,
    evidence: dict[str, str] | None = None,
) -> Promotion:
    """Put an earlier champion back; the replaced one is marked `rolled_back`."""
    current = registry.champion_version(client, name)
    if current is None:
        raise RollbackRefusedError(f"Model '{name}' has no champion to roll back from.")
    if expected_current is not None and current != expected_current:
        raise StaleChampionError(
            f"The champion is v{current}, not v{expected_current}: it moved since the rollback "
            "was asked for. Nothing was changed."
        )
    target = rollback_target(client, name, current, to)
    registry.promote(client, name, target, actor, f"{ROLLBACK_REASON}{reason}")
    rolled_back = {
        Tag.STATUS: Status.ROLLED_BACK,
        Tag.STATUS_REASON: reason,
        Tag.ROLLED_BACK_AT: stamp(now_utc()),
        Tag.ROLLED_BACK_BY: actor,
    }
    registry.record(client, name, current, rolled_back)
    entry = Entry(Action.ROLLED_BACK, current, actor, reason, current, target, evidence or {})
    append(client, name, entry)
    _refresh_cards(client, name, current, target)
    return Promotion(target, current, moved=True)
