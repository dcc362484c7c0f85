"""The query service's own system token, for the index and the producers.

A configured token (QUERY_SYSTEM_TOKEN) is used as is. Otherwise, on the local stack, one is
signed with the local issuer's key and renewed before it expires. Until the index accepts the
``system`` role, the token also carries ``admin`` (the index's FindContent needs operator or
admin); see the README's notes for the lead.
"""

from __future__ import annotations

import time
from datetime import timedelta

from npo_platform.identity import PRIVATE_KEY_FILE, Principal, Role, issue_token

from .config import QuerySettings

TTL = timedelta(minutes=15)


class SystemTokens:
    """A callable returning a valid bearer token for service-to-service calls."""

    def __init__(self, private_key_pem: bytes, principal: Principal, ttl: timedelta = TTL):
        self._key, self._principal, self._ttl = private_key_pem, principal, ttl
        self._token, self._renew_at = "", 0.0

    def __call__(self) -> str:
        if time.monotonic() >= self._renew_at:
            self._token = issue_token(self._key, self._principal, self._ttl)
            self._renew_at = time.monotonic() + self._ttl.total_seconds() / 2
        return self._token


def system_principal(settings: QuerySettings) -> Principal:
    return Principal(sub=settings.system_hsa_id, name=settings.service_name,
                     roles=frozenset({Role.SYSTEM}))


def token_source(settings: QuerySettings) -> SystemTokens | str:
    if settings.system_token:
        return settings.system_token
    key = (settings.keys_dir / PRIVATE_KEY_FILE).read_bytes()
    return SystemTokens(key, system_principal(settings))
