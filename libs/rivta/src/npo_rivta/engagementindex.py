"""Codecs of the engagement index contracts (Update, ProcessNotification, FindContent) from and
to the project's own types: ``EngagementTransaction``/``Engagement`` of the event contracts.

Element order and names are TD_ENGAGEMENTINDEX 1.0's; times are YYYYMMDDhhmmss (UTC);
elements of other namespaces (the contracts' extension points) are ignored on input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp
from lxml import etree

from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_rivta.contracts import FIND_CONTENT, PROCESS_NOTIFICATION, UPDATE, Interaction

EI_NS = "urn:riv:itintegration:engagementindex:1"

# EngagementType's elements in the contract's order, with the event contract's field names.
ENGAGEMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("registeredResidentIdentification", "registered_resident_identification"),
    ("serviceDomain", "service_domain"),
    ("categorization", "categorization"),
    ("logicalAddress", "logical_address"),
    ("businessObjectInstanceIdentifier", "business_object_instance_identifier"),
    ("clinicalProcessInterestId", "clinical_process_interest_id"),
    ("mostRecentContent", "most_recent_content"),
    ("sourceSystem", "source_system"),
    ("creationTime", "creation_time"),
    ("updateTime", "update_time"),
    ("dataController", "data_controller"),
    ("owner", "owner"),
)
_TIMES = frozenset({"creation_time", "update_time"})  # set by the index, ignored on input
_BY_TAG = {f"{{{EI_NS}}}{xml}": proto for xml, proto in ENGAGEMENT_FIELDS if proto not in _TIMES}
_DELETE_FLAG = f"{{{EI_NS}}}deleteFlag"
_ENGAGEMENT = f"{{{EI_NS}}}engagement"
_TS = "%Y%m%d%H%M%S"


def _ei(local: str) -> str:
    return f"{{{EI_NS}}}{local}"


# --- in ------------------------------------------------------------------------------------

def transactions(body: etree._Element, interaction: Interaction) -> list[EngagementTransaction]:
    """The engagement transactions of an Update or ProcessNotification request (schema-valid).

    Read a column at a time: one XPath per field gives that field's text in every transaction
    (libxml2 walks the tree, not Python), set on the messages in place. A column is aligned with
    the transactions when it has one text per transaction: the schema allows each field once, and
    no text is in pieces (nothing to split one: no comment, no processing instruction), which
    one XPath rules out first. A field that some transactions lack (or leave empty) is read
    transaction by transaction; a comment, or a transaction without its engagement or flag,
    sends the request through ``_one_by_one``.
    """
    paths = _paths(interaction.responder_ns)
    deletes = _texts(paths.deletes, body)
    n = len(deletes)
    if paths.count(body) != n or paths.engagements(body) != n or paths.split(body):
        return _one_by_one(body, interaction)
    found = [EngagementTransaction(delete_flag=d.strip() in _TRUE) for d in deletes]
    messages = [tx.engagement for tx in found]
    nodes: list[etree._Element] = []
    for name, tag, path in paths.fields:
        column = _texts(path, body)
        if not column:  # no transaction has it
            continue
        if len(column) != n:  # some lack the field or leave it empty: ask each
            nodes = nodes or cast(list[etree._Element], paths.engagement_nodes(body))
            column = [node.findtext(tag) or "" for node in nodes]
        for engagement, value in zip(messages, column, strict=True):
            setattr(engagement, name, value)
    return found


_TRUE = ("true", "1")


@dataclass(frozen=True)
class _Paths:
    """The compiled XPaths of ``transactions`` for one responder namespace."""

    count: etree.XPath  # of the transactions
    engagements: etree.XPath  # their count
    engagement_nodes: etree.XPath
    deletes: etree.XPath
    split: etree.XPath  # whether anything could split a text in pieces
    fields: tuple[tuple[str, str, etree.XPath], ...]  # (field name, tag, its texts)


@lru_cache(maxsize=4)
def _paths(responder_ns: str) -> _Paths:
    ns = {"r": responder_ns, "ei": EI_NS}
    tx = "r:engagementTransaction"

    def texts(path: str) -> etree.XPath:
        return etree.XPath(f"{tx}/{path}/text()", namespaces=ns, smart_strings=False)

    return _Paths(
        etree.XPath(f"count({tx})", namespaces=ns),
        etree.XPath(f"count({tx}/ei:engagement)", namespaces=ns),
        etree.XPath(f"{tx}/ei:engagement", namespaces=ns),
        texts("ei:deleteFlag"),
        etree.XPath("boolean(.//comment() | .//processing-instruction())"),
        tuple((name, _ei(xml), texts(f"ei:engagement/ei:{xml}"))
              for xml, name in ENGAGEMENT_FIELDS if name not in _TIMES),
    )


def _texts(path: etree.XPath, body: etree._Element) -> list[str]:
    return cast(list[str], path(body))  # a text() path without smart strings: plain str


def _one_by_one(body: etree._Element, interaction: Interaction) -> list[EngagementTransaction]:
    """``transactions`` element by element: the reference the column reading must equal."""
    found = []
    for tx in body.iterfind(interaction.qualified("engagementTransaction")):
        delete = _text(tx.find(_DELETE_FLAG)).strip() in _TRUE
        decoded = EngagementTransaction(delete_flag=delete)
        node = tx.find(_ENGAGEMENT)
        if node is not None:
            _fill(decoded.engagement, node)
        found.append(decoded)
    return found


def _fill(engagement: Engagement, node: etree._Element) -> None:
    for child in node:
        name = _BY_TAG.get(child.tag) if isinstance(child.tag, str) else None
        if name is not None:
            setattr(engagement, name, _text(child))


def _text(node: etree._Element | None) -> str:
    """An element's whole text: a comment inside splits it into pieces."""
    if node is None:
        return ""
    if len(node):
        return "".join(cast(Iterable[str], node.itertext()))  # text, never bytes, once parsed
    return node.text or ""


def _engagement(node: etree._Element) -> Engagement:
    engagement = Engagement()
    _fill(engagement, node)
    return engagement


@dataclass(frozen=True)
class FindContentRequest:
    """FindContent's question: patient and service domain, exact filters on the other key
    fields, ``most_recent_content`` as "on or after"."""

    patient: str
    service_domain: str
    filters: dict[str, str] = field(default_factory=dict)  # event-contract field name → value
    most_recent_content: str | None = None


_FILTERS = ("categorization", "logical_address", "business_object_instance_identifier",
            "clinical_process_interest_id", "source_system", "data_controller", "owner")


def find_content_request(body: etree._Element) -> FindContentRequest:
    values = {name: child.text or "" for child in body if isinstance(child.tag, str)
              for name in [_find_field(child.tag)] if name}
    return FindContentRequest(
        values.pop("registered_resident_identification", ""), values.pop("service_domain", ""),
        {k: v for k, v in values.items() if k in _FILTERS},
        values.get("most_recent_content") or None,
    )


def _find_field(tag: str) -> str | None:
    local = tag.rpartition("}")[2] if tag.startswith(f"{{{FIND_CONTENT.responder_ns}}}") else ""
    return _FIND_FIELDS.get(local)


_FIND_FIELDS = dict(ENGAGEMENT_FIELDS)


# --- out -----------------------------------------------------------------------------------

def engagement_element(engagement: Engagement, tag: str) -> etree._Element:
    """An EngagementType element named ``tag``; empty optional parts are left out, times as
    YYYYMMDDhhmmss."""
    node = etree.Element(tag, nsmap={"ei": EI_NS})
    for xml, name in ENGAGEMENT_FIELDS:
        if name in _TIMES:
            stamp: Timestamp = getattr(engagement, name)
            value = _time(stamp) if engagement.HasField(name) else ""
        else:
            value = getattr(engagement, name)
        if value or name in _ALWAYS:
            etree.SubElement(node, _ei(xml)).text = value
    return node


# the contract's mandatory elements, written even when empty
_ALWAYS = frozenset({"registered_resident_identification", "service_domain", "categorization",
                     "logical_address", "business_object_instance_identifier",
                     "clinical_process_interest_id", "source_system", "data_controller"})


def _time(stamp: Timestamp) -> str:
    return datetime.fromtimestamp(stamp.seconds, UTC).strftime(_TS)


def time_text(value: datetime) -> str:
    """A datetime as the contracts write times (YYYYMMDDhhmmss, UTC)."""
    return value.astimezone(UTC).strftime(_TS)


def transactions_request(interaction: Interaction,
                         items: Iterable[EngagementTransaction]) -> etree._Element:
    """An Update or ProcessNotification request of ``items``."""
    root = etree.Element(interaction.request, nsmap={"tns": interaction.responder_ns, "ei": EI_NS})
    for tx in items:
        node = etree.SubElement(root, interaction.qualified("engagementTransaction"))
        etree.SubElement(node, _DELETE_FLAG).text = "true" if tx.delete_flag else "false"
        node.append(engagement_element(tx.engagement, _ENGAGEMENT))
    return root


def result_response(interaction: Interaction, code: str = "OK",
                    comment: str | None = None) -> etree._Element:
    """An Update or ProcessNotification answer (ResultCode OK, ERROR or INFO)."""
    root = etree.Element(interaction.response, nsmap={"tns": interaction.responder_ns})
    etree.SubElement(root, interaction.qualified("ResultCode")).text = code
    if comment:
        etree.SubElement(root, interaction.qualified("comment")).text = comment
    return root


def result_code(response: etree._Element, interaction: Interaction) -> str:
    return (response.findtext(interaction.qualified("ResultCode")) or "").strip()


def find_content_response(engagements: Iterable[Engagement]) -> etree._Element:
    root = etree.Element(FIND_CONTENT.response, nsmap={"tns": FIND_CONTENT.responder_ns,
                                                        "ei": EI_NS})
    tag = FIND_CONTENT.qualified("engagement")
    root.extend(engagement_element(e, tag) for e in engagements)
    return root


def find_content_engagements(response: etree._Element) -> list[Engagement]:
    """The engagements of a FindContent answer (creation and update times left out)."""
    return [_engagement(node)
            for node in response.iterfind(FIND_CONTENT.qualified("engagement"))]


__all__ = [
    "EI_NS", "ENGAGEMENT_FIELDS", "FIND_CONTENT", "PROCESS_NOTIFICATION", "UPDATE",
    "FindContentRequest", "engagement_element", "find_content_engagements",
    "find_content_request", "find_content_response", "result_code", "result_response",
    "time_text", "transactions", "transactions_request",
]
