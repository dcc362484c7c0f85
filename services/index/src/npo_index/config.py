"""npo-index settings: its INDEX_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import ServiceSettings

from .riv_notify import Subscriber


class IndexSettings(ServiceSettings):
    """What npo-index reads from its environment; its HTTP port is defined here only."""

    model_config = SettingsConfigDict(env_prefix="INDEX_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-index"
    http_port: int = 8101
    db_schema: str = "npo_index"
    consumer_group: str = "npo-index"
    max_batch: int = 2000
    consumers: int = 3  # group members per process (at most one per partition does work)
    run_consumer: bool = True  # the HTTP process also ingests; off for API-only replicas
    # Loop protection (EI006): no engagement may point at the platform's own addresses.
    own_addresses: frozenset[str] = frozenset({"SE5565594230-NPOIDX", "SE5565594230-NPOAGP"})
    find_content_max_page: int = 1000
    # RIV-TA (riv.py): the index's own logical address (every call's LogicalAddress header must
    # name it, EI003; the owner of what producers send it), the largest SOAP message accepted,
    # and the most engagements one SOAP FindContent answers (it has no paging).
    riv_logical_address: str = "SE5565594230-NPOIDX"
    riv_max_body_bytes: int = 8 * 1024 * 1024
    riv_find_content_max: int = 10_000
    # Notifications out (notify.py): who gets the change stream as ProcessNotification calls
    # (JSON: [{"logicalAddress", "endpoint", "filters": [{"serviceDomain", "categorizations"}],
    # "token"}]), change records per handled batch, calls tried before a dead letter, timeout.
    riv_subscribers: tuple[Subscriber, ...] = ()
    riv_notify_batch: int = 500
    riv_notify_attempts: int = 8
    riv_notify_timeout_s: float = 10.0
    # The aggregating systems (system-token subjects) FindContent answers; nobody else (domain_access.py).
    find_content_systems: frozenset[str] = frozenset({"SE5565594230-NPOAGP"})
    audit_url: str = "http://127.0.0.1:8104"  # the operator page's search statistics
    # The operator page's organisation directory (JSON; `npo directory --out …`); None: no directory.
    directory_file: Path | None = None
