"""The audit history's hash graph: two writers appending at once are not tampering; the next
entry joins them; a signature covers the hash and nothing else verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import history
from flows.history import Action, Entry, Stored
from flows.signing import Signer, SigningKeyError, load_signer, public_key
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
