"""npo-query settings: its QUERY_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import ServiceSettings


class QuerySettings(ServiceSettings):
    """What npo-query reads from its environment; its HTTP port is defined here only.

    Timeouts are seconds. AGP's defaults (2 s connect, 27 s read, 28 s overall) are far too
    long for a clinician waiting on a screen; ours are shorter and every one is configurable.
    """

    model_config = SettingsConfigDict(env_prefix="QUERY_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-query"
    http_port: int = 8102
    db_schema: str = "npo_query"
    db_pool_size: int = 5
    # Where the other services are (the local stack's default ports).
    index_url: str = "http://127.0.0.1:8101"
    consent_url: str = "http://127.0.0.1:8103"
    consent_public_url: str | None = None  # where browsers reach it, when not consent_url
    index_public_url: str | None = None  # where browsers reach the index (names), when not index_url
    # The system HSA-id this deployment reads for (the routing table's consumer system).
    consumer_system: str = "SE5565594230-NPOVIEW"
    # The query service's own HSA-id, the subject of its system tokens.
    system_hsa_id: str = "SE5565594230-NPOAGP"
    # A system token to use as is; when empty one is signed with the signing key below.
    system_token: str = ""
    # The Ed25519 private key (PEM) the query signs its own system tokens with: one of its own
    # in a deployment, whose public key the index and the producers trust as a service key
    # (NPO_JWT_SERVICE_KEY_PATHS); unset, the local issuer's key in the state dir (`npo up`).
    signing_key_path: Path | None = None
    routing_file: Path | None = None
    # Routes may point at this machine (127.0.0.0/8, ::1, localhost): the local stack's
    # simulated producers; off in production. Link-local addresses are never allowed.
    allow_loopback_routes: bool = False
    # Per producer: connect, and the whole call including continuation pages.
    producer_connect_timeout_s: float = 1.0
    producer_timeout_s: float = 5.0
    overall_deadline_s: float = 8.0  # the whole aggregation, all producers
    producer_page_size: int = 200
    max_pages_per_producer: int = 50
    max_connections: int = 500
    index_timeout_s: float = 3.0
    index_page_size: int = 500
    consent_timeout_s: float = 2.0
    decision_cache_ttl_s: float = 5.0  # short: a revocation also invalidates at once
    decision_cache_size: int = 10_000
    audit_timeout_s: float = 5.0  # bound on the broker's acks=all acknowledgement
    push_max_s: float = 3600.0  # a subscription never outlives this (or the reader's token)
    # RIV-TA (riv.py): the national aggregating logical address the read contracts are addressed
    # to (Inera's aggregating services answer to its organisation number; a call's
    # LogicalAddress header must be this one) and the largest request accepted.
    riv_logical_address: str = "5565594230"
    riv_max_body_bytes: int = 1024 * 1024
    run_consumers: bool = True
    ensure_topics: bool = True
