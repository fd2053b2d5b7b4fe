"""The audit history's hash graph: two writers appending at once are not tampering; the next
entry joins them; a signature covers the hash and nothing else verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_flows.registry import history
from mlops_flows.registry.history import Action, Entry, Stored
from mlops_flows.registry.signing import (
    Signer,
    SigningKeyError,
    load_approvers,
    load_signer,
    public_key,
)
from tests.support import make_key


def _written(run_id: str, entry: Entry, previous: list[str]) -> Stored:
    tags = entry.to_tags() | {history.PREVIOUS: ",".join(previous) or history.GENESIS}
    tags[history.HASH] = history.content_digest(tags)
    return Stored(run_id, tags)


def test_two_writers_at_once_leave_two_heads_that_the_next_entry_joins() -> None:
    first = _written("a", Entry(Action.REGISTERED, "1", "t", "passed"), [])
    left = _written("b", Entry(Action.REGISTERED, "2", "t", "passed"), [first.digest])
    right = _written("c", Entry(Action.GATES_FAILED, "3", "t", "failed"), [first.digest])
    assert history.heads([first, left, right]) == sorted([left.digest, right.digest])

    joined = _written(
        "d", Entry(Action.PROMOTED, "2", "t", "ok", None, "2"), history.heads([first, left, right])
    )
    assert history.heads([first, left, right, joined]) == [joined.digest]
    assert history.verify([first, left, right, joined], None) == []


def test_the_first_entry_follows_genesis_and_an_entry_without_previous_is_reported() -> None:
    first = _written("a", Entry(Action.REGISTERED, "1", "t", "passed"), [])
    assert first.previous == (history.GENESIS,)
    bare = Entry(Action.REGISTERED, "2", "t", "passed").to_tags()
    bare[history.HASH] = history.content_digest(bare)
    (problem,) = history.verify([first, Stored("b", bare)], None)
    assert "(run b): names no previous entry" in problem


def test_the_hash_covers_every_audit_tag_and_only_those() -> None:
    stored = _written("a", Entry(Action.REGISTERED, "1", "t", "passed", evidence={"k": "v"}), [])
    assert stored.intact()
    for key in (f"{history.EVIDENCE}k", f"{history.PREFIX}actor", history.PREVIOUS):
        changed = Stored("a", stored.tags | {key: "other"})
        assert not changed.intact(), key
    assert Stored("a", stored.tags | {history.SIGNATURE: "anything"}).intact()


def test_a_signature_verifies_only_under_its_key_and_only_for_its_hash(tmp_path: Path) -> None:
    governance = public_key(make_key(tmp_path / "governance"), "test")
    make_key(tmp_path / "other")
    signer = load_signer(tmp_path / "governance", "test")
    other = load_signer(tmp_path / "other", "test")
    stored = _written("a", Entry(Action.REGISTERED, "1", "t", "passed"), [])

    def signed(by: Signer, digest: str) -> Stored:
        signature = by.sign(history.signed_message(digest))
        return Stored("a", stored.tags | {history.SIGNATURE: signature})

    assert signed(signer, stored.digest).signed_by(governance)
    assert not signed(other, stored.digest).signed_by(governance)
    assert not signed(signer, "0" * 64).signed_by(governance)
    assert not stored.signed_by(governance)  # unsigned
    assert signer.public.fingerprint == governance.fingerprint


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a key", "cannot be read|not an unencrypted OpenSSH private key"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "not an unencrypted OpenSSH private key",
        ),
    ],
)
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    with pytest.raises(SigningKeyError, match=message):
        load_signer(path, "MLOPS_GOVERNANCE__SIGNING_KEY_FILE")
    with pytest.raises(SigningKeyError, match="cannot be read"):
        load_signer(tmp_path / "missing", "MLOPS_GOVERNANCE__SIGNING_KEY_FILE")


@pytest.mark.parametrize(
    "line", ["", "ssh-ed25519", "ssh-ed25519 !!!", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"]
)
def test_a_bad_public_key_line_is_a_clear_error(line: str) -> None:
    with pytest.raises(SigningKeyError, match="MLOPS_GOVERNANCE__PUBLIC_KEY"):
        public_key(line, "MLOPS_GOVERNANCE__PUBLIC_KEY")


def test_an_entry_without_a_hash_is_reported_as_not_chained() -> None:
    first = _written("a", Entry(Action.REGISTERED, "1", "t", "passed"), [])
    bare = Stored("b", Entry(Action.PROMOTED, "1", "t", "ok", None, "1").to_tags())
    (problem,) = history.verify([first, bare], None)
    assert problem.endswith("(run b): not chained (no audit.hash tag): written outside governance")
    assert history.trusted([first, bare], None)[-1].action == Action.PROMOTED  # local: all
    assert history.heads([first, bare]) == [first.digest]


def _approvers(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "approvers"
    path.write_text(text)
    return path


def test_an_approvers_file_names_each_person_once_with_an_ed25519_key(tmp_path: Path) -> None:
    alice, bob = make_key(tmp_path / "alice"), make_key(tmp_path / "bob")
    found = load_approvers(
        _approvers(tmp_path, f"# approvers\n\nalice {alice}\n  bob {bob} laptop\n"), "F"
    )
    assert set(found) == {"alice", "bob"}
    assert found["alice"].fingerprint == load_signer(tmp_path / "alice", "k").public.fingerprint
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDDKrN4ZDXfOchC5o2NnuYu8dNTvqwBNs7SLnswm9U8Mw=="
    for text, message in [
        (f"alice {alice}\nalice {bob}\n", "line 2: 'alice' is listed twice"),
        ("# nobody\n", "lists no approver"),
        ("alice\n", "line 1 is not an OpenSSH public key line"),
        (f"carol {rsa}\n", "not an OpenSSH public key line|ssh-rsa key"),
    ]:
        with pytest.raises(SigningKeyError, match=message):
            load_approvers(_approvers(tmp_path, text), "F")
    with pytest.raises(SigningKeyError, match="cannot be read"):
        load_approvers(tmp_path / "missing", "F")


def test_only_an_ed25519_private_key_signs(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa"
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    with pytest.raises(SigningKeyError, match="is not an Ed25519 key"):
        load_signer(path, "K")


def test_a_decision_authenticates_only_as_its_listed_approver(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from mlops_flows.registry import decisions

    alice = public_key(make_key(tmp_path / "alice"), "test")
    make_key(tmp_path / "mallory")
    deadline = datetime(2026, 12, 10, tzinfo=UTC)
    message = decisions.decision_message("churn", "3", deadline, "approve", "alice", "ok")
    other = decisions.decision_message("churn", "4", deadline, "approve", "alice", "ok")
    by_alice = load_signer(tmp_path / "alice", "k").sign(message)
    by_mallory = load_signer(tmp_path / "mallory", "k").sign(message)
    approvers = {"alice": alice}

    assert decisions.authenticate(approvers, message, "alice", by_alice) == (
        f"alice (key {alice.fingerprint})"
    )
    assert decisions.authenticate(None, message, "anyone", "") == "anyone"  # local profile
    for approver, signed, signature, refusal in [
        ("mallory", message, by_mallory, "'mallory' is not an approver"),
        ("alice", message, "", "is not signed"),
        ("alice", message, by_mallory, "does not verify with 'alice''s key"),
        ("alice", other, by_alice, "does not verify"),  # replayed onto another version
        ("alice", message, "not base64!", "does not verify"),
    ]:
        with pytest.raises(decisions.UnauthenticatedDecisionError, match=refusal):
            decisions.authenticate(approvers, signed, approver, signature)


def test_a_public_key_of_another_type_is_refused_naming_its_type() -> None:
    from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
    line = rsa.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    with pytest.raises(SigningKeyError, match="is a ssh-rsa key; only ssh-ed25519"):
        public_key(line, "the approver's key")
