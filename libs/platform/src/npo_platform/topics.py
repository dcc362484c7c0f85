"""Kafka topic names, defined once. Every other module refers to these constants."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A topic, its key, the protobuf message each record holds and the topic-level settings
    it is created with (``kafka_admin.ensure_event_topics``)."""

    name: str
    key: str
    message: str  # full protobuf name of the record's value
    config: tuple[tuple[str, str], ...] = ()

    @property
    def dead_letter(self) -> str:
        return dead_letter_topic(self.name)


def replication_for(brokers: int) -> tuple[int, int]:
    """The replication factor and ``min.insync.replicas`` of every topic on ``brokers`` brokers:
    three copies where there are three, of which two must hold an acknowledged write, so one
    node may die without losing it or refusing writes; one copy on a single broker."""
    replicas = min(3, max(1, brokers))
    return replicas, max(1, replicas - 1)


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``: same key, the reason in headers."""
    return f"{topic}.dlq"


# The broker stamps each update when it appends it (LogAppendTime): the index judges "event time
# not in the future" (EI004) against that stamp, which is in the log (replays decide the same)
# and, unlike a record's CreateTime, not chosen by the producer.
LOG_APPEND_TIME = ("message.timestamp.type", "LogAppendTime")
ENGAGEMENT_UPDATES = Topic(
    "npo.engagement.updates.v1", "patient id", "npo.events.v1.EngagementUpdate", (LOG_APPEND_TIME,)
)
# v2: a record holds IndexChanges (a patient's changes of one ingest batch); v1 held one IndexChange.
INDEX_CHANGES = Topic("npo.index.changes.v2", "patient id", "npo.events.v1.IndexChanges")
ACCESS_EVENTS = Topic("npo.access.events.v1", "patient id", "npo.events.v1.AccessEvent")
CONSENT_EVENTS = Topic("npo.consent.events.v1", "patient id", "npo.events.v1.ConsentEvent")

ALL_TOPICS: tuple[Topic, ...] = (ENGAGEMENT_UPDATES, INDEX_CHANGES, ACCESS_EVENTS, CONSENT_EVENTS)
