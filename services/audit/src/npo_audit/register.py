"""Keyed digests of addresses for the kinship rule: comparable, never stored in clear."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "audit-register.key"


class RegisterKey:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def in_dir(cls, keys_dir: Path) -> RegisterKey:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = keys_dir / KEY_FILE
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as file:
                    file.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def digest(self, address: str) -> str:
        normalised = " ".join(address.casefold().replace(",", " ").split())
        return hmac.new(self._key, normalised.encode(), hashlib.sha256).hexdigest()
