"""Subscribers' filter of the index change stream (EI's ProcessNotification): domain and categorizations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from npo_platform.contracts import IndexChange, IndexChanges


@dataclass(frozen=True)
class ChangeFilter:
    """Subscriber-side filter (EI's ProcessNotification): a serviceDomain and its categorizations.

    An empty ``categorizations`` accepts every categorization of the domain.
    """

    service_domain: str
    categorizations: frozenset[str] = frozenset()

    @classmethod
    def of(cls, service_domain: str, categorizations: Iterable[str] = ()) -> ChangeFilter:
        return cls(service_domain, frozenset(categorizations))

    def matches(self, change: IndexChange) -> bool:
        engagement = change.engagement
        if engagement.service_domain != self.service_domain:
            return False
        return not self.categorizations or engagement.categorization in self.categorizations

    def select(self, record: IndexChanges) -> list[IndexChange]:
        """The changes of one change-stream record (a patient's changes of one ingest batch)
        that this filter accepts, in their order."""
        return [change for change in record.changes if self.matches(change)]
