"""Settling a registered version: its gate outcome recorded, then promotion (policy auto) or a
request for approval (policy manual). Each step runs once however often a run is retried."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mlops_flows import vocabulary
from mlops_flows.adapters import events
from mlops_flows.registry import card, governance, history
from mlops_flows.registry import versions as registry
from mlops_flows.registry.lock import registry_lock
from mlops_flows.settings import PromotionPolicy, Settings
from mlops_flows.steps.training import TrainingOutcome, TrainingStatus
from mlops_flows.vocabulary import Tag


def settle_candidate(settings: Settings, version: str) -> TrainingOutcome:
    """Record the gate outcome, then promote (policy auto, compare-and-set under the registry
    lock) or ask for approval (policy manual). Each step runs once however often it is retried."""
    from mlflow import MlflowClient

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    registered = client.get_model_version(name, version)
    tags, run_id = vocabulary.flatten(registered.tags), str(registered.run_id)
    passed, summary = tags[Tag.GATES_PASSED] == "true", tags[Tag.GATES_SUMMARY]
    previous = governance.tagged_version(tags, Tag.EVALUATED_AGAINST)
    _record_gate_outcome(client, name, version, run_id, tags, passed, summary)
    if not passed:
        card.refresh(client, name, version)
        return TrainingOutcome(TrainingStatus.REJECTED, version, run_id, previous, summary)
    if settings.promotion_policy is PromotionPolicy.MANUAL:
        if Tag.APPROVAL not in tags:
            _ask_for_approval(settings, client, name, version, run_id)
        return TrainingOutcome(TrainingStatus.CHALLENGER, version, run_id, previous, summary)
    try:
        with registry_lock(name, settings.governance.lock_timeout_seconds):
            promotion = governance.promote(
                client, name, version, actor=events.actor(), reason="gates passed; policy auto"
            )
    except governance.StaleChampionError as error:
        return TrainingOutcome(TrainingStatus.SUPERSEDED, version, run_id, previous, str(error))
    # Also when a retry finds the move done: the first attempt may have stopped before telling.
    events.emit(
        events.MODEL_PROMOTED,
        name,
        {"version": version, "previous_version": promotion.previous, "run_id": run_id},
    )
    return TrainingOutcome(TrainingStatus.CHAMPION, version, run_id, promotion.previous, summary)


def _record_gate_outcome(
    client: Any,
    name: str,
    version: str,
    run_id: str,
    tags: dict[str, str],
    passed: bool,
    summary: str,
) -> None:
    """Status tag, history entry and event, each written once: a retry skips what is done."""
    if Tag.STATUS not in tags:
        registry.record_outcome(client, name, version, passed, summary)
    action = history.Action.REGISTERED if passed else history.Action.GATES_FAILED
    if history.has(client, name, action, version):
        return
    entry = history.Entry(action, version, events.actor(), summary, evidence={"run_id": run_id})
    history.append(client, name, entry)
    events.emit(
        events.MODEL_REGISTERED,
        name,
        {"version": version, "run_id": run_id, "passed_gates": passed},
    )


def _ask_for_approval(
    settings: Settings, client: Any, name: str, version: str, run_id: str
) -> None:
    governance.expire_overdue(client, name, actor=events.actor())
    deadline = governance.now_utc() + timedelta(
        seconds=settings.governance.approval_timeout_seconds
    )
    governance.request_approval(client, name, version, deadline=deadline, actor=events.actor())
    events.emit(
        events.APPROVAL_REQUESTED,
        name,
        {"version": version, "run_id": run_id, "deadline": deadline.isoformat()},
    )


def registered_by_this_run(settings: Settings) -> str | None:
    from mlflow import MlflowClient

    return registry.first_version_tagged(
        MlflowClient(settings.tracking_uri),
        settings.mlflow.model_name,
        Tag.FLOW_RUN,
        events.flow_run_key(),
    )
