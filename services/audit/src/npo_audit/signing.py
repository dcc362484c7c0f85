"""Ed25519 checkpoints: the key in the state dir, and signing/verifying a chain head."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_KEY_FILE = "audit-checkpoint-ed25519-private.pem"
PUBLIC_KEY_FILE = "audit-checkpoint-ed25519-public.pem"


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: chain ``chain`` had hash ``hash`` at ``seq``."""

    chain: str
    seq: int
    hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes


def checkpoint_message(chain: str, seq: int, digest: bytes, signed_at: datetime) -> bytes:
    stamp = signed_at.isoformat(timespec="microseconds")
    return f"npo-audit-checkpoint:v1:{chain}:{seq}:{digest.hex()}:{stamp}".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    def sign(self, chain: str, seq: int, digest: bytes, signed_at: datetime) -> Checkpoint:
        signature = self._key.sign(checkpoint_message(chain, seq, digest, signed_at))
        return Checkpoint(chain, seq, digest, signed_at, self.key_id, signature)


class CheckpointVerifier:
    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key
        self.key_id = key_id(public_key)

    def valid(self, checkpoint: Checkpoint) -> bool:
        if checkpoint.key_id != self.key_id:
            return False
        message = checkpoint_message(
            checkpoint.chain, checkpoint.seq, checkpoint.hash, checkpoint.signed_at
        )
        try:
            self._key.verify(checkpoint.signature, message)
        except InvalidSignature:
            return False
        return True


def ensure_signing_key(keys_dir: Path) -> CheckpointSigner:
    """The checkpoint signer, creating its key pair in ``keys_dir`` on first use (race-safe)."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = keys_dir / PRIVATE_KEY_FILE
    if not private_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _publish_exclusively(private_path, pem)
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit checkpoint key must be an Ed25519 private key")
    public_path = keys_dir / PUBLIC_KEY_FILE
    if not public_path.exists():
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _publish_exclusively(public_path, public_pem)
    return CheckpointSigner(key)


def load_verifier(keys_dir: Path) -> CheckpointVerifier:
    key = serialization.load_pem_public_key((keys_dir / PUBLIC_KEY_FILE).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the audit checkpoint public key must be an Ed25519 key")
    return CheckpointVerifier(key)


def _publish_exclusively(path: Path, content: bytes) -> None:
    # Like the platform's identity keys: write a temp file, link it into place (first one wins).
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as file:
        file.write(content)
    try:
        os.link(name, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(name)
