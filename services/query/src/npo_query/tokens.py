"""The query service's own system tokens: one for the platform's services (the index), and one
per producer, bound to it.

The platform token: a configured one (QUERY_SYSTEM_TOKEN) is used as is; otherwise one is signed
with the query's signing key and renewed before it expires. A producer's token names that
producer's endpoint (as the routing table gives it) as its audience and lives two minutes: a
producer, or whoever a route points at, cannot replay it at the index, the consent or audit
service, or at another producer. Producer tokens are always signed with the signing key.

The signing key (QUERY_SIGNING_KEY_PATH) is the query's own in a deployment: its verifiers trust
its public key for system tokens only, so a compromised query cannot mint a clinician's token.
Unset, it is the local issuer's key in the state dir, as ``npo up`` runs it.
"""

from __future__ import annotations

import time
from datetime import timedelta

from npo_platform.identity import (
    DEFAULT_AUDIENCE,
    PRIVATE_KEY_FILE,
    Principal,
    Role,
    issue_token,
    read_key_file,
)

from .config import QuerySettings

TTL = timedelta(minutes=15)
PRODUCER_TTL = timedelta(minutes=2)
SIGNING_KEY_SETTING = "QUERY_SIGNING_KEY_PATH"


class ProducerTokens:
    """A callable returning a valid token bound to an audience (a producer's endpoint), each
    audience's renewed at half its lifetime."""

    def __init__(self, private_key_pem: bytes, principal: Principal, ttl: timedelta = PRODUCER_TTL):
        self._key, self._principal, self._ttl = private_key_pem, principal, ttl
        self._tokens: dict[str, tuple[str, float]] = {}  # audience -> (token, renew at)

    def __call__(self, audience: str) -> str:
        found = self._tokens.get(audience)
        if found is not None and time.monotonic() < found[1]:
            return found[0]
        token = issue_token(self._key, self._principal, self._ttl, audience=audience)
        self._tokens[audience] = (token, time.monotonic() + self._ttl.total_seconds() / 2)
        return token


class SystemTokens:
    """A callable returning a valid bearer token for service-to-service calls: the platform's
    own audience, renewed as a producer's token is."""

    def __init__(self, private_key_pem: bytes, principal: Principal, ttl: timedelta = TTL):
        self._tokens = ProducerTokens(private_key_pem, principal, ttl)

    def __call__(self) -> str:
        return self._tokens(DEFAULT_AUDIENCE)


def system_principal(settings: QuerySettings) -> Principal:
    return Principal(sub=settings.system_hsa_id, name=settings.service_name,
                     roles=frozenset({Role.SYSTEM}))


def token_source(settings: QuerySettings) -> SystemTokens | str:
    if settings.system_token:
        return settings.system_token
    return SystemTokens(signing_key(settings), system_principal(settings))


def producer_token_source(settings: QuerySettings) -> ProducerTokens:
    return ProducerTokens(signing_key(settings), system_principal(settings))


def signing_key(settings: QuerySettings) -> bytes:
    """The query's signing key, checked; KeySettingError names the setting when it is unusable."""
    if settings.signing_key_path is not None:
        return read_key_file(settings.signing_key_path, SIGNING_KEY_SETTING, private=True)
    return read_key_file(settings.keys_dir / PRIVATE_KEY_FILE,
                         f"{SIGNING_KEY_SETTING} (unset: the local issuer's key)", private=True)
