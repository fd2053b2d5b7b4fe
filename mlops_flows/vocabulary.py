"""The registry's vocabulary: every model-version tag name, status and approval state, and
which tags stay searchable. Plain values, so that every part can name them; the registry
(`mlops_flows.registry.versions`) reads and writes them.

MLflow's version list shows every tag of a version, so a version keeps at most a dozen: the
ones people search and filter by (`SEARCHABLE`, and the primary metric). Everything else the
protocol records on a version (who promoted it and why, the approval's deadline, the champion
it was compared with, ...) is one JSON tag, `mlops.record`. The full picture stays in the run's
lineage.json and gates.json, the model card and the signed history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum

TAG_LIMIT = 5000  # MLflow's longest tag value
RECORD_VALUE_LIMIT = 300  # a reason in the record (the history keeps it whole): ~4 kB in all
MAX_TAGS = 12  # the most a version carries: SEARCHABLE, the primary metric and the record
METRIC_PREFIX = "metric."  # `metric.<primary metric>`: the version list can sort by it


class Tag(StrEnum):
    """Every version tag name the library writes or reads."""

    # Searchable tags.
    STATUS = "status"  # see Status
    GATES_PASSED = "gates.passed"  # true | false
    GATES_SUMMARY = "gates.summary"
    APPROVAL = "approval"  # see Approval
    CODE_COMMIT = "lineage.code_commit"
    FEATURE_SERVICE = "lineage.feature_service"
    TRAINING_SET_DIGEST = "lineage.training_set_digest"
    FLOW_RUN = "mlops.flow_run_id"  # the flow run that registered it: a retry finds it
    REQUEST_KEY = "mlops.request_key"  # digest of data, features, code, lock, parameters, seed
    MODEL_DIGEST = "mlops.model_sha256"
    RECORD = "mlops.record"  # the JSON object holding the names below
    # Kept in the record, under the names they had as tags before it existed.
    STATUS_REASON = "status_reason"
    EVALUATED_AGAINST = "mlops.champion_at_training"
    PROMOTED_AT = "promoted_at"
    PROMOTED_BY = "promoted_by"
    PROMOTION_REASON = "promotion_reason"
    PREVIOUS_CHAMPION = "previous_champion"
    APPROVAL_DEADLINE = "approval_deadline"
    APPROVAL_FLOW_RUN = "approval_flow_run_id"
    DECIDED_BY = "decided_by"
    DECIDED_AT = "decided_at"
    DECISION_REASON = "decision_reason"
    ROLLED_BACK_AT = "rolled_back_at"
    ROLLED_BACK_BY = "rolled_back_by"
    REDEPLOY_FAILURE = "redeploy_failure"


class Status(StrEnum):
    """Where a version stands (`status`)."""

    CHALLENGER = "challenger"  # passed its gates; awaits approval or promotion
    REJECTED = "rejected"  # failed a gate, or a person rejected it
    SUPERSEDED = "superseded"  # lost a race for `champion`, or duplicated its request
    CHAMPION = "champion"
    RETIRED = "retired"  # a later champion replaced it
    ROLLED_BACK = "rolled_back"


class Approval(StrEnum):
    """The state of a version's approval request (`approval`)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


SEARCHABLE = frozenset(
    {
        Tag.STATUS,
        Tag.GATES_PASSED,
        Tag.GATES_SUMMARY,
        Tag.APPROVAL,
        Tag.CODE_COMMIT,
        Tag.FEATURE_SERVICE,
        Tag.TRAINING_SET_DIGEST,
        Tag.FLOW_RUN,
        Tag.REQUEST_KEY,
        Tag.MODEL_DIGEST,
    }
)


def metric_tag(metric: str) -> str:
    return f"{METRIC_PREFIX}{metric}"


def _searchable(key: str) -> bool:
    return key in SEARCHABLE or key.startswith(METRIC_PREFIX)


def record_of(tags: Mapping[str, str]) -> dict[str, str]:
    """The fields of a version's record (none for a version registered before it existed)."""
    record: dict[str, str] = json.loads(tags.get(Tag.RECORD, "{}"))
    return record


def flatten(tags: Mapping[str, str]) -> dict[str, str]:
    """A version's facts as one mapping: its tags and the fields of its record."""
    return {key: value for key, value in tags.items() if key != Tag.RECORD} | record_of(tags)


def as_tags(facts: Mapping[str, str]) -> dict[str, str]:
    """The tags that hold these facts: searchable ones as themselves, the rest in the record."""
    tags = {key: value[:TAG_LIMIT] for key, value in facts.items() if _searchable(key)}
    record = {
        key: value[:RECORD_VALUE_LIMIT] for key, value in facts.items() if not _searchable(key)
    }
    if record:
        tags[Tag.RECORD] = json.dumps(record, sort_keys=True)
    return tags
