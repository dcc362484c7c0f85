"""RIV-TA headers: the SOAP ``LogicalAddress`` and ``ProcessingStatus`` blocks, the platform's
HTTP headers (original consumer, correlation id)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from npo_rivta.soap import Envelope
from npo_rivta.xml import text

REGISTRY_NS = "urn:riv:itintegration:registry:1"
LOGICAL_ADDRESS = f"{{{REGISTRY_NS}}}LogicalAddress"
HEADERS_NS = "urn:riv:interoperability:headers:1"
PROCESSING_STATUS = f"{{{HEADERS_NS}}}ProcessingStatus"

ORIGINAL_CONSUMER = "x-rivta-original-serviceconsumer-hsaid"
CORRELATION_ID = "x-skltp-correlation-id"
_HEADER_VALUE = re.compile(r"[A-Za-z0-9._:#@-]{1,128}")  # an HSA-id or an id; nothing else is kept


def logical_address(env: Envelope) -> str | None:
    """The LogicalAddress the message is addressed to, None when missing or empty."""
    return env.header_text(LOGICAL_ADDRESS) or None


def logical_address_header(address: str) -> etree._Element:
    block = etree.Element(LOGICAL_ADDRESS, nsmap={"reg": REGISTRY_NS})
    block.text = address
    return block


@dataclass(frozen=True)
class PlatformHeaders:
    """The national platform's HTTP headers of a call: who originally asked, and the id that
    follows the call through every system. A malformed value counts as absent; a call without a
    correlation id gets a new one (as the platform gives one)."""

    original_consumer: str | None
    correlation_id: str

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> PlatformHeaders:
        return cls(_valid(headers.get(ORIGINAL_CONSUMER)),
                   _valid(headers.get(CORRELATION_ID)) or uuid.uuid4().hex)

    def outgoing(self) -> dict[str, str]:
        """The headers to pass on when this call causes another."""
        found = {CORRELATION_ID: self.correlation_id}
        if self.original_consumer:
            found[ORIGINAL_CONSUMER] = self.original_consumer
        return found


def _valid(value: str | None) -> str | None:
    return value if value is not None and _HEADER_VALUE.fullmatch(value) else None


class StatusCode(StrEnum):
    DATA_FROM_SOURCE = "DataFromSource"
    DATA_FROM_CACHE = "DataFromCache"
    DATA_FROM_CACHE_SYNCH_FAILED = "DataFromCacheSynchFailed"
    NO_DATA_SYNCH_FAILED = "NoDataSynchFailed"


class CausingAgent(StrEnum):
    SERVICE_PRODUCER = "service_producer"
    ENGAGEMENT_INDEX = "engagement_index"
    VIRTUALIZATION_PLATFORM = "virtualization_platform"


@dataclass(frozen=True)
class SynchError:
    causing_agent: CausingAgent
    error_code: int
    text: str


@dataclass(frozen=True)
class SourceStatus:
    """One source of an aggregated answer (times as YYYYMMDDhhmmss)."""

    logical_address: str
    status: StatusCode
    last_successful_synch: str | None = None
    last_unsuccessful_synch: str | None = None
    error: SynchError | None = None

    @property
    def from_cache(self) -> bool:
        return self.status in (StatusCode.DATA_FROM_CACHE, StatusCode.DATA_FROM_CACHE_SYNCH_FAILED)

    @property
    def in_synch(self) -> bool:
        return self.status in (StatusCode.DATA_FROM_SOURCE, StatusCode.DATA_FROM_CACHE)


def processing_status_header(sources: Iterable[SourceStatus]) -> etree._Element:
    block = etree.Element(PROCESSING_STATUS, nsmap={"h": HEADERS_NS})
    for source in sources:
        record = etree.SubElement(block, _h("ProcessingStatusList"))
        _add(record, "logicalAddress", source.logical_address)
        _add(record, "statusCode", source.status.value)
        _add(record, "isResponseFromCache", _bool(source.from_cache))
        _add(record, "isResponseInSynch", _bool(source.in_synch))
        _add(record, "lastSuccessfulSynch", source.last_successful_synch)
        _add(record, "lastUnsuccessfulSynch", source.last_unsuccessful_synch)
        if source.error is not None:
            error = etree.SubElement(record, _h("lastUnsuccessfulSynchError"))
            _add(error, "causingAgent", source.error.causing_agent.value)
            _add(error, "errorCode", str(source.error.error_code))
            _add(error, "text", source.error.text)
    return block


def processing_status(env: Envelope) -> list[SourceStatus]:
    """The sources of a received aggregated answer (none when it has no ProcessingStatus)."""
    block = env.header(PROCESSING_STATUS)
    if block is None:
        return []
    return [_source(record) for record in block.iterfind(_h("ProcessingStatusList"))]


def _source(record: etree._Element) -> SourceStatus:
    error = record.find(_h("lastUnsuccessfulSynchError"))
    return SourceStatus(
        text(record.find(_h("logicalAddress"))), StatusCode(text(record.find(_h("statusCode")))),
        text(record.find(_h("lastSuccessfulSynch"))) or None,
        text(record.find(_h("lastUnsuccessfulSynch"))) or None,
        None if error is None else SynchError(
            CausingAgent(text(error.find(_h("causingAgent")))),
            int(text(error.find(_h("errorCode"))) or 0), text(error.find(_h("text")))),
    )


def _h(name: str) -> str:
    return f"{{{HEADERS_NS}}}{name}"


def _add(parent: etree._Element, name: str, value: str | None) -> None:
    if value is not None:
        etree.SubElement(parent, _h(name)).text = value


def _bool(value: bool) -> str:
    return "true" if value else "false"
