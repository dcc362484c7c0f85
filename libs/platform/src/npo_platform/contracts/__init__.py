"""Generated protobuf event contracts (``make proto``); the source is proto/npo/events/v1."""

from npo_platform.contracts.events_pb2 import (
    AccessEvent,
    ConsentEvent,
    EngagementUpdate,
    EventMeta,
    IndexChange,
    IndexChanges,
)

__all__ = ["AccessEvent", "ConsentEvent", "EngagementUpdate", "EventMeta", "IndexChange", "IndexChanges"]
