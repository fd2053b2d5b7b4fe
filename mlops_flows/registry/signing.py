"""Ed25519 signatures with OpenSSH keys: the governance key signs the audit history, each
approver's key signs a decision. `ssh-keygen -t ed25519` makes either kind of key."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_flows.errors import MlopsError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

KEYGEN = "ssh-keygen -t ed25519 -N '' -f <file>"


class SigningKeyError(MlopsError):
    """A key file or public key line that is missing, unreadable or not Ed25519."""


@dataclass(frozen=True)
class PublicKey:
    """One `ssh-ed25519 AAAA...` key; `fingerprint` is what `ssh-keygen -l` prints."""

    key: Ed25519PublicKey
    fingerprint: str

    def verifies(self, message: bytes, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self.key.verify(base64.b64decode(signature, validate=True), message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A private key and the public key that checks what it signs."""

    key: Ed25519PrivateKey
    public: PublicKey

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.key.sign(message)).decode()


def public_key(line: str, what: str) -> PublicKey:
    """Parse an OpenSSH public key line; `what` names where it came from, for the error."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    fields = line.split()
    try:
        key = load_ssh_public_key(" ".join(fields[:2]).encode())
        blob = base64.b64decode(fields[1])
    except (ValueError, IndexError, TypeError) as error:
        raise SigningKeyError(
            f"{what} is not an OpenSSH public key line (`ssh-ed25519 AAAA...`): {error}"
        ) from error
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{what} is a {fields[0]} key; only ssh-ed25519 keys are accepted.")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return PublicKey(key, f"SHA256:{digest}")


def load_signer(path: Path, what: str) -> Signer:
    """Read an unencrypted OpenSSH Ed25519 private key file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_ssh_private_key,
    )

    try:
        key = load_ssh_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise SigningKeyError(
            f"{what} {path} cannot be read: {error}. Make one: {KEYGEN}."
        ) from error
    except (ValueError, TypeError) as error:
        raise SigningKeyError(
            f"{what} {path} is not an unencrypted OpenSSH private key ({error}). Make one: "
            f"{KEYGEN}."
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{what} {path} is not an Ed25519 key. Make one: {KEYGEN}.")
    line = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return Signer(key, public_key(line, what))


def load_approvers(path: Path, what: str) -> dict[str, PublicKey]:
    """Read an approvers file: one `<name> ssh-ed25519 AAAA... [comment]` line per person (the
    format of ssh's allowed_signers); blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise SigningKeyError(f"{what} {path} cannot be read: {error}.") from error
    approvers: dict[str, PublicKey] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, key = line.strip().partition(" ")
        if name in approvers:
            raise SigningKeyError(f"{what} {path} line {number}: {name!r} is listed twice.")
        approvers[name] = public_key(key, f"{what} {path} line {number}")
    if not approvers:
        raise SigningKeyError(f"{what} {path} lists no approver (`<name> ssh-ed25519 AAAA...`).")
    return approvers
