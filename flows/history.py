"""The audit history: one MLflow run per registry decision, in the experiment `<model>-audit`.

MLflow keeps no alias history. Each promotion, rejection, approval and rollback is written here
as its own finished run whose tags say what happened; runs are only ever added, so concurrent
writers never overwrite each other, and the MLflow UI shows the history as a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

PREFIX = "audit."
EVIDENCE = f"{PREFIX}evidence."
TAG_LIMIT = 5000  # MLflow's longest tag value


class Action:
    """The kinds of entry (their text is part of the public interface: `mlops history`)."""

    REGISTERED = "registered"
    GATES_FAILED = "gates_failed"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    APPROVAL_REJECTED = "approval_rejected"
    APPROVAL_TIMED_OUT = "approval_timed_out"
    PROMOTED = "promoted"
    PROMOTION_REFUSED = "promotion_refused"
    ROLLED_BACK = "rolled_back"


CHAMPION_MOVES = frozenset({Action.PROMOTED, Action.ROLLED_BACK})


def version_label(version: str | None) -> str:
    """`v3`, or `none` where there was no version (before the first champion)."""
    return f"v{version}" if version else "none"


@dataclass(frozen=True)
class Entry:
    """One decision: what, about which version, from which champion to which, who, why."""

    action: str
    version: str
    actor: str
    reason: str
    from_version: str | None = None
    to_version: str | None = None
    evidence: dict[str, str] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def champion_move(self) -> str:
        """How `champion` moved with this entry ("none -> v1", "v2 -> v3"); empty for an entry
        that moved nothing (a request, a decision, a refusal: their versions are proposals)."""
        if self.action not in CHAMPION_MOVES or self.to_version is None:
            return ""
        return f"{version_label(self.from_version)} -> {version_label(self.to_version)}"

    def to_tags(self) -> dict[str, str]:
        tags = {
            f"{PREFIX}action": self.action,
            f"{PREFIX}version": self.version,
            f"{PREFIX}actor": self.actor,
            f"{PREFIX}reason": self.reason[:TAG_LIMIT],
            f"{PREFIX}from_version": self.from_version or "none",
            f"{PREFIX}to_version": self.to_version or "none",
            f"{PREFIX}at": self.at,
        }
        return tags | {
            f"{EVIDENCE}{key}": value[:TAG_LIMIT] for key, value in self.evidence.items()
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Entry:
        def version(key: str) -> str | None:
            value = tags.get(f"{PREFIX}{key}", "none")
            return None if value == "none" else value

        return cls(
            action=tags[f"{PREFIX}action"],
            version=tags[f"{PREFIX}version"],
            actor=tags.get(f"{PREFIX}actor", ""),
            reason=tags.get(f"{PREFIX}reason", ""),
            from_version=version("from_version"),
            to_version=version("to_version"),
            evidence={
                key.removeprefix(EVIDENCE): value
                for key, value in tags.items()
                if key.startswith(EVIDENCE)
            },
            at=tags.get(f"{PREFIX}at", ""),
        )


def experiment_name(model_name: str) -> str:
    return f"{model_name}-audit"


def _experiment_id(client: MlflowClient, model_name: str, create: bool) -> str | None:
    from mlflow.exceptions import MlflowException

    name = experiment_name(model_name)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    if not create:
        return None
    try:
        from flows.tracking import local_artifact_root

        location = local_artifact_root(client.tracking_uri)  # not the current folder's mlruns
        return str(
            client.create_experiment(
                name, artifact_location=location, tags={"mlops.audit_of": model_name}
            )
        )
    except MlflowException:  # another writer created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def append(client: MlflowClient, model_name: str, entry: Entry) -> str:
    """Add one entry; return the id of the run that holds it."""
    experiment_id = _experiment_id(client, model_name, create=True)
    assert experiment_id is not None
    run = client.create_run(
        experiment_id, tags=entry.to_tags(), run_name=f"{entry.action} v{entry.version}"
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def read(client: MlflowClient, model_name: str, version: str | None = None) -> list[Entry]:
    """Every entry, oldest first; only those about `version` when one is named."""
    experiment_id = _experiment_id(client, model_name, create=False)
    if experiment_id is None:
        return []
    query = f"tags.`{PREFIX}version` = '{version}'" if version is not None else ""
    entries: list[Entry] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        entries += [Entry.from_tags(run.data.tags) for run in page]
        token = page.token
        if not token:
            break
    return sorted(entries, key=lambda entry: entry.at)


def has(client: MlflowClient, model_name: str, action: str, version: str) -> bool:
    """Whether an entry of this kind exists for the version (retries must not write twice)."""
    return any(entry.action == action for entry in read(client, model_name, version))
