"""The engagement record's identity and versions (design.md §5.1), shared by producers and the index.

Identity: the nine fields that identify an engagement, with empty optional parts written as
``NA`` (as Inera's EI does), hashed with SHA-256 into the key. Version: the total order of
transactions on one record (event time, content time, event id), by which the index keeps only
the newest state. No I/O.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

NOT_APPLICABLE = "NA"  # EI's normalised form of an empty optional key part
_SEPARATOR = "\x1f"  # unit separator: no two different identities hash the same text


class Identity(msgspec.Struct, frozen=True, gc=False):
    """The nine fields that identify an engagement, optional parts already normalised to ``NA``.

    An immutable msgspec struct (built in C, not tracked by the garbage collector: it holds only
    strings). ``key`` is computed at each use; a Transaction carries its identity's key, which
    the ingest computes once.
    """

    patient: str
    service_domain: str
    categorization: str
    logical_address: str
    business_object_instance_identifier: str
    clinical_process_interest_id: str
    source_system: str
    data_controller: str
    owner: str

    @property
    def key(self) -> bytes:
        """SHA-256 over the nine fields, as EI stores it (raw 32 bytes; ``.hex()`` on the wire)."""
        return identity_key(self.parts())

    def parts(self) -> tuple[str, ...]:
        return (
            self.patient, self.service_domain, self.categorization, self.logical_address,
            self.business_object_instance_identifier, self.clinical_process_interest_id,
            self.source_system, self.data_controller, self.owner,
        )


def identity_key(parts: tuple[str, ...]) -> bytes:
    """The key of the nine (normalised) identity fields, in ``Identity.parts()`` order."""
    return hashlib.sha256(_SEPARATOR.join(parts).encode()).digest()


def normalise_optional(value: str) -> str:
    """Empty optional key parts become ``NA``, the same way every time."""
    return value if value else NOT_APPLICABLE


class Version(msgspec.Struct, frozen=True, order=True, gc=False):
    """Total order of transactions on one record: event time, content time, event id.

    The order is the fields' order (``order=True``). Like Transaction, an immutable msgspec
    struct: built in C, far cheaper than a frozen dataclass on the ingest's hot path, and
    untracked by the garbage collector (it holds no containers, so it can be in no cycle).
    """

    event_time: datetime
    most_recent_content: str
    event_id: str


class Transaction(msgspec.Struct, frozen=True, gc=False):
    """One validated engagement transaction of an update event; ``key`` is ``identity.key``
    (the ingest's validation passes the one it computed, rather than computing it again)."""

    identity: Identity
    most_recent_content: str
    delete: bool
    version: Version
    key: bytes
