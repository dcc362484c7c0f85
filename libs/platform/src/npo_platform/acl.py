"""Who may do what on the broker: each service's principal, the topics it writes and reads, its
consumer groups (design.md §3 and §4). The local stack's ACLs and the Kubernetes KafkaUsers are
both made from this table, so a service's rights are written down once."""

from __future__ import annotations

from dataclasses import dataclass

from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS, ENGAGEMENT_UPDATES, INDEX_CHANGES, Topic


@dataclass(frozen=True)
class Principal:
    """A Kafka user. ``writes``: topics it publishes to; ``reads``: topics it consumes (and so
    may dead-letter to, ``<topic>.dlq``); ``group``: its consumer group id, or with
    ``group_prefix`` the prefix of its groups (the query service's are one per replica)."""

    name: str
    writes: tuple[Topic, ...] = ()
    reads: tuple[Topic, ...] = ()
    group: str = ""
    group_prefix: bool = False

    @property
    def written(self) -> list[str]:
        """Every topic name it may write: its own topics and the dead letters of those it reads."""
        return [t.name for t in self.writes] + [t.dead_letter for t in self.reads]

    @property
    def read(self) -> list[str]:
        return [t.name for t in self.reads]

    @property
    def described(self) -> list[str]:
        """Topics it may only see: the dead letters of what it writes, which it ensures exist
        with its own topics at start (a topic it cannot describe looks missing to it)."""
        return [t.dead_letter for t in self.writes if t.dead_letter not in self.written]


INDEX = Principal("npo-index", writes=(INDEX_CHANGES, ENGAGEMENT_UPDATES),  # HTTP producer ingest
                  reads=(ENGAGEMENT_UPDATES,), group="npo-index")
QUERY = Principal("npo-query", writes=(ACCESS_EVENTS,), reads=(CONSENT_EVENTS, INDEX_CHANGES),
                  group="npo-query-", group_prefix=True)
CONSENT = Principal("npo-consent", writes=(CONSENT_EVENTS,), reads=(ACCESS_EVENTS,),
                    group="npo-consent")
AUDIT = Principal("npo-audit", reads=(ACCESS_EVENTS, CONSENT_EVENTS), group="npo-audit")
# Producers' record systems (the producer SDK, the simulated producers) publish updates only.
PRODUCER = Principal("npo-producer", writes=(ENGAGEMENT_UPDATES,))

SERVICES: tuple[Principal, ...] = (INDEX, QUERY, CONSENT, AUDIT)
PRINCIPALS: tuple[Principal, ...] = (*SERVICES, PRODUCER)
# The launcher's own user: creates topics and users, grants ACLs; never a service's.
ADMIN = "npo-admin"
