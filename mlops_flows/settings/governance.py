"""Who promotes, approval, the audit history's keys and the registry lock."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field

from mlops_flows.settings.group import Group


class PromotionPolicy(StrEnum):
    """Who moves the `champion` alias once a version has passed its gates."""

    AUTO = "auto"
    MANUAL = "manual"


class GovernanceSettings(Group):
    """Approval before production, the audit history and the registry lock."""

    approval_timeout_seconds: int = Field(
        default=72 * 3600,
        ge=1,
        description="How long a challenger waits for a decision under the manual policy; a "
        "timeout counts as rejected.",
    )
    approval_poll_seconds: int = Field(
        default=5, ge=1, description="How often a paused local approval run looks for a decision."
    )
    lock_timeout_seconds: float = Field(
        default=120,
        gt=0,
        description="How long a promotion or rollback waits for the registry lock (a Prefect "
        "global concurrency limit named `mlops-registry-<model>`).",
    )
    approvers_file: Path | None = Field(
        default=None,
        description="Who may decide on an approval: one `<name> ssh-ed25519 AAAA...` line per "
        "person (ssh's allowed_signers format). With it, a decision counts only if signed by the "
        "key listed for its approver (`mlops approve|reject --key`), and the history records "
        "`<name> (key SHA256:...)`; without it the approver is free text. Required by the "
        "approval flow in the production profile.",
    )
    approver_key_file: Path | None = Field(
        default=None,
        description="Your own OpenSSH Ed25519 private key, with which `mlops approve|reject` "
        "signs your decision (the `--key` option's default).",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="The governance key: an unencrypted OpenSSH Ed25519 private key "
        "(`ssh-keygen -t ed25519 -N '' -f governance-key`) that signs every audit-history entry. "
        "Only the processes that decide hold it (the worker, `mlops` commands that promote); "
        "required there in the production profile.",
    )
    public_key: str | None = Field(
        default=None,
        description="The governance key's public line (`ssh-ed25519 AAAA...`, the .pub file). "
        "Readers trust only entries it verifies: in the production profile the service, batch "
        "scoring and the flows refuse a champion whose last move it does not verify, and "
        "`mlops history --verify` checks every entry with it.",
    )
