"""The audit history: one MLflow run per registry decision, in the experiment `<model>-audit`.

MLflow keeps no alias history. Each promotion, rejection, approval and rollback is written here
as its own finished run whose tags say what happened; runs are only ever added, so concurrent
writers never overwrite each other, and the MLflow UI shows the history as a table.

Tamper-evident: each entry's tags hold the sha256 of its content and the hashes of the entries
no other entry named yet when it was written (`audit.previous`: a chain, or a graph where two
writers appended at once), and, where a governance key is configured, an Ed25519 signature of
that hash. `verify` reports an edited, removed or inserted entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from mlops_flows.errors import MlopsError
from mlops_flows.vocabulary import TAG_LIMIT

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_flows.registry.signing import PublicKey, Signer
    from mlops_flows.settings import Settings

PREFIX = "audit."
EVIDENCE = f"{PREFIX}evidence."
HASH = f"{PREFIX}hash"  # sha256 of the other audit tags (not of itself or the signature)
SIGNATURE = f"{PREFIX}signature"  # the governance key's Ed25519 signature of SIGNED + hash
PREVIOUS = f"{PREFIX}previous"  # hashes of the heads when written, or GENESIS
GENESIS = "genesis"
SIGNED = b"mlops-audit-v1:"
SIGNING_KEY = "MLOPS_GOVERNANCE__SIGNING_KEY_FILE"
PUBLIC_KEY = "MLOPS_GOVERNANCE__PUBLIC_KEY"


class HistoryKeyError(MlopsError):
    """The production profile lacks the governance key it signs or verifies the history with."""


class Action:
    """The kinds of entry (their text is part of the public interface: `mlops history`)."""

    REGISTERED = "registered"
    GATES_FAILED = "gates_failed"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    APPROVAL_REJECTED = "approval_rejected"
    DECISION_REFUSED = "decision_refused"  # a decision that did not authenticate: still pending
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
        from mlops_flows.adapters.tracking import local_artifact_root

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


def content_digest(tags: Mapping[str, str]) -> str:
    """The sha256 of an entry's audit tags other than its hash and signature."""
    content = {k: v for k, v in tags.items() if k.startswith(PREFIX) and k not in (HASH, SIGNATURE)}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def signed_message(digest: str) -> bytes:
    """What the governance key signs for an entry: its hash, under this history's prefix."""
    return SIGNED + digest.encode()


@dataclass(frozen=True)
class Stored:
    """An entry as the store holds it: its run and its audit tags, hash and signature
    included."""

    run_id: str
    tags: dict[str, str]

    @cached_property
    def entry(self) -> Entry:
        return Entry.from_tags(self.tags)

    @property
    def digest(self) -> str:
        return self.tags.get(HASH, "")

    @property
    def previous(self) -> tuple[str, ...]:
        return tuple(self.tags.get(PREVIOUS, "").split(",")) if PREVIOUS in self.tags else ()

    def intact(self) -> bool:
        return bool(self.digest) and self.digest == content_digest(self.tags)

    def signed_by(self, key: PublicKey) -> bool:
        signature = self.tags.get(SIGNATURE)
        return (
            signature is not None
            and self.intact()
            and key.verifies(signed_message(self.digest), signature)
        )

    def label(self) -> str:
        return f"{self.entry.action} v{self.entry.version} at {self.entry.at} (run {self.run_id})"


def signer(settings: Settings) -> Signer | None:
    """The governance key that signs new entries: none on the local profile without one; an
    error on the production profile without one (call it before changing anything)."""
    from mlops_flows.registry.signing import load_signer

    path = settings.governance.signing_key_file
    if path is None:
        if settings.is_production:
            raise HistoryKeyError(
                f"The production profile signs every audit-history entry: set {SIGNING_KEY} to "
                "the governance key (`ssh-keygen -t ed25519 -N '' -f governance-key`) on the "
                "worker and wherever `mlops` decides. Nothing was changed."
            )
        return None
    return load_signer(path, SIGNING_KEY)


def trusted_key(settings: Settings) -> PublicKey | None:
    """The public key entries must verify under: none on the local profile without one; an
    error on the production profile without one."""
    from mlops_flows.registry.signing import public_key

    line = settings.governance.public_key
    if line is None:
        if settings.is_production:
            raise HistoryKeyError(
                f"The production profile trusts only audit-history entries signed by the "
                f"governance key: set {PUBLIC_KEY} to its public line (the .pub file)."
            )
        return None
    return public_key(line, PUBLIC_KEY)


def heads(stored: list[Stored]) -> list[str]:
    """Hashes of the entries no other entry names as previous (one, unless writers raced)."""
    named = {previous for entry in stored for previous in entry.previous}
    return sorted(s.digest for s in stored if s.digest and s.digest not in named)


def append(client: MlflowClient, model_name: str, entry: Entry) -> str:
    """Add one entry after the current heads, signed with the governance key where the
    settings name one; return the id of the run that holds it."""
    from mlops_flows.settings import Settings

    key = signer(Settings())
    experiment_id = _experiment_id(client, model_name, create=True)
    assert experiment_id is not None
    tags = entry.to_tags()
    tags[PREVIOUS] = ",".join(heads(read_stored(client, model_name))) or GENESIS
    tags[HASH] = content_digest(tags)
    if key is not None:
        tags[SIGNATURE] = key.sign(signed_message(tags[HASH]))
    run = client.create_run(experiment_id, tags=tags, run_name=f"{entry.action} v{entry.version}")
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def read_stored(client: MlflowClient, model_name: str, version: str | None = None) -> list[Stored]:
    """Every entry as stored, oldest first; only those about `version` when one is named."""
    experiment_id = _experiment_id(client, model_name, create=False)
    if experiment_id is None:
        return []
    query = f"tags.`{PREFIX}version` = '{version}'" if version is not None else ""
    stored: list[Stored] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        stored += [
            Stored(
                run.info.run_id, {k: v for k, v in run.data.tags.items() if k.startswith(PREFIX)}
            )
            for run in page
        ]
        token = page.token
        if not token:
            break
    return sorted(stored, key=lambda s: s.entry.at)


def read(client: MlflowClient, model_name: str, version: str | None = None) -> list[Entry]:
    """Every entry, oldest first; only those about `version` when one is named."""
    return [s.entry for s in read_stored(client, model_name, version)]


def trusted(stored: list[Stored], key: PublicKey | None) -> list[Entry]:
    """The entries to act on: those the governance key signed, or all of them without a key
    (the local profile has no one to defend against: `verify` still checks the chain)."""
    return [s.entry for s in stored if key is None or s.signed_by(key)]


def verify(stored: list[Stored], key: PublicKey | None) -> list[str]:
    """What is wrong with the history: an entry changed after it was written, one removed
    (another names it as previous), or one written without the governance key. Empty when
    intact. Without a key an insertion that extends the chain cannot be told apart."""
    problems: list[str] = []
    digests = {s.digest for s in stored}
    for s in stored:
        if not s.digest:
            problems.append(f"{s.label()}: not chained (no {HASH} tag): written outside governance")
            continue
        if not s.intact():
            problems.append(f"{s.label()}: changed after it was written (content and hash differ)")
        elif key is not None and not s.signed_by(key):
            problems.append(
                f"{s.label()}: not signed by the governance key {key.fingerprint}: written "
                "outside governance"
            )
        missing = [p for p in s.previous if p != GENESIS and p not in digests]
        problems += [
            f"{s.label()}: follows entry {p[:12]}, which is not in the history: an entry was "
            "removed"
            for p in missing
        ]
        if not s.previous:
            problems.append(f"{s.label()}: names no previous entry ({PREVIOUS} missing)")
    return problems


def has(client: MlflowClient, model_name: str, action: str, version: str) -> bool:
    """Whether an entry of this kind exists for the version (retries must not write twice)."""
    return any(entry.action == action for entry in read(client, model_name, version))
