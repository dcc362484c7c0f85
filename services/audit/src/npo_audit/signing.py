"""The audit's keys in the state dir: Ed25519 checkpoints (signing and verifying a chain head),
the register's key for keyed digests of addresses (the kinship rule), and ``ensure_keys``.

The replicas of one audit must share every key: a checkpoint one replica signs, another
verifies; the kinship rule compares digests any replica made; a next-page link one replica
issued (the FHIR paging key), another opens. A single process makes them on first need; a
cluster gets them from a Secret made once by ``npo k8s secrets``, which calls ``ensure_keys``
through the ``npo.keys`` entry point.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from npo_platform.identity import ensure_local_keypair, ensure_secret

KEY_NAME = "audit-checkpoint-ed25519"  # a key pair of its own, beside the token issuer's
PUBLIC_KEY_FILE = f"{KEY_NAME}-public.pem"


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
    private_path, _ = ensure_local_keypair(keys_dir, KEY_NAME)
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit checkpoint key must be an Ed25519 private key")
    return CheckpointSigner(key)


def load_verifier(keys_dir: Path) -> CheckpointVerifier:
    key = serialization.load_pem_public_key((keys_dir / PUBLIC_KEY_FILE).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the audit checkpoint public key must be an Ed25519 key")
    return CheckpointVerifier(key)


REGISTER_KEY_FILE = "audit-register.key"


class RegisterKey:
    """Keyed digests of addresses for the kinship rule: comparable, never stored in clear."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def in_dir(cls, keys_dir: Path) -> RegisterKey:
        """The key in ``keys_dir``, made on first need; processes starting together agree on it
        (an exclusive create would let a second process read the first one's empty file)."""
        return cls(ensure_secret(keys_dir, REGISTER_KEY_FILE, lambda: secrets.token_bytes(32)))

    def digest(self, address: str) -> str:
        normalised = " ".join(address.casefold().replace(",", " ").split())
        return hmac.new(self._key, normalised.encode(), hashlib.sha256).hexdigest()


def ensure_keys(keys_dir: Path) -> list[Path]:
    """Make what is missing of the audit's keys in ``keys_dir``; the paths of all of them."""
    # Imported here: the paging module reaches this one through the store (an import cycle).
    from .fhir_search_pages import KEY_FILE as PAGE_KEY_FILE
    from .fhir_search_pages import PageTokens

    ensure_signing_key(keys_dir)
    RegisterKey.in_dir(keys_dir)
    PageTokens.in_dir(keys_dir, ttl_s=1)
    names = (f"{KEY_NAME}-private.pem", PUBLIC_KEY_FILE, REGISTER_KEY_FILE, PAGE_KEY_FILE)
    return [keys_dir / name for name in names]
