"""npo-audit settings: its AUDIT_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    """What npo-audit reads from its environment; its HTTP port is defined here only."""

    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-audit"
    http_port: int = 8104
    db_schema: str = "npo_audit"  # its database role's schema (npo_platform.acl)
    consumer_group: str = "npo-audit"
    # The HTTP process also runs the consumers unless a separate worker (`npo audit worker`) does.
    run_consumers: bool = True
    max_batch: int = 1000
    topic_partitions: int = 3
    patients_per_hour: int = 40
    refused_attempts_per_hour: int = 3  # the third refused command of a user in an hour: flagged
    sweep_interval_s: float = 10.0
    office_start_hour: int = 7
    office_end_hour: int = 18
    max_export: int = 100_000
    index_url: str = "http://127.0.0.1:8101"  # where the pages' browsers read the directory's names
    # How long a FHIR search's paging link (an encrypted continuation token) stays valid.
    fhir_page_ttl_s: int = 3600
