"""Read contracts' requests and records, from and to the project's JSON documents.

A document is ``{"header": …, "body": …}``. The header is the project's common one
(``record_headers``: each contract maps its own header to and from it). The body is the
contract's body element as JSON: an element with children is an object of its children (a
repeated name a list), a leaf its text; written back in the contract's element order (a body
the contract types as a whole is written in the object's order). Fields the contract has no
element for (a body key outside the body type, a header key outside the contract's header: the
project's social-services marker, for one) travel whole as JSON text in an extension element
(``urn:npo:rivta:extension:1`` ``field``, where the contract's types allow other namespaces). So
a document survives JSON → XML → JSON unchanged when its body's contract elements hold strings,
objects and lists of two or more.

The contracts themselves (one ``ReadContract`` each) are in ``read_contracts``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from npo_rivta.contracts import Interaction
from npo_rivta.record_headers import (
    HSA_OID,
    PERSONNUMMER_OID,
    SAMORDNINGSNUMMER_OID,
    HeaderShape,
    append_json,
    as_json,
    patient_type,
)
from npo_rivta.xml import text

Json = dict[str, Any]
__all__ = ["HSA_OID", "PERSONNUMMER_OID", "SAMORDNINGSNUMMER_OID", "patient_type"]  # re-exported
EXTENSION_NS = "urn:npo:rivta:extension:1"
EXTENSION = f"{{{EXTENSION_NS}}}field"


@dataclass(frozen=True)
class RequestShape:
    """A contract's request elements (responder namespace): the care unit, care giver ("" when
    none) and source system filters; ``ii``: identifiers as II (root + extension) rather than
    text and ``patientId`` as {root: type OID, extension: id} rather than {id, type}."""

    unit: str = "careUnitHSAId"
    giver: str = ""
    source: str = "sourceSystemHSAId"
    ii: bool = False


@dataclass(frozen=True)
class ReadContract:
    """One read contract: its interaction, the category it serves and how its records look."""

    interaction: Interaction
    category: str  # npo_platform.categories key
    core_ns: str
    record: str  # the answer's record element (responder namespace)
    header: str  # the record's header and body elements (core namespace)
    body: str
    shape: HeaderShape
    body_elements: tuple[str, ...]  # the body type's elements in order; () taken whole
    asks: RequestShape = RequestShape()
    result: bool = True  # the answer ends with a ResultType ``result``

    def c(self, local: str) -> str:
        return f"{{{self.core_ns}}}{local}"


# --- requests --------------------------------------------------------------------------------

def request(contract: ReadContract, patient_id: str, *, source_system: str = "",
            care_units: Iterable[str] = (), care_givers: Iterable[str] = ()) -> etree._Element:
    """The contract's request for one patient, optionally narrowed to a source system."""
    i, ns, asks = contract.interaction, contract.core_ns, contract.asks
    root = etree.Element(i.request, nsmap={"tns": i.responder_ns, "core": ns})
    for value in care_units:
        _identifier(root, i.qualified(asks.unit), value, contract)
    for value in care_givers if asks.giver else ():
        _identifier(root, i.qualified(asks.giver), value, contract)
    person = etree.SubElement(root, i.qualified("patientId"))
    kind = patient_type(patient_id)
    for name, value in ((("root", kind), ("extension", patient_id)) if asks.ii
                        else (("id", patient_id), ("type", kind))):
        etree.SubElement(person, f"{{{ns}}}{name}").text = value
    if source_system:
        _identifier(root, i.qualified(asks.source), source_system, contract)
    return root


def _identifier(parent: etree._Element, tag: str, value: str, contract: ReadContract) -> None:
    node = etree.SubElement(parent, tag)
    if contract.asks.ii:
        etree.SubElement(node, contract.c("root")).text = HSA_OID
        etree.SubElement(node, contract.c("extension")).text = value
    else:
        node.text = value


@dataclass(frozen=True)
class Asked:
    """What a received request asks (the simulator and the aggregating front end read it)."""

    patient_id: str
    patient_type: str
    source_system: str
    care_units: tuple[str, ...]
    care_givers: tuple[str, ...]


def asked(contract: ReadContract, body: etree._Element) -> Asked:
    i, asks = contract.interaction, contract.asks
    person = body.find(i.qualified("patientId"))
    id_, kind = ("extension", "root") if asks.ii else ("id", "type")
    return Asked(
        text(None if person is None else person.find(contract.c(id_))).strip(),
        text(None if person is None else person.find(contract.c(kind))).strip(),
        next(iter(_identifiers(body, asks.source, contract)), ""),
        _identifiers(body, asks.unit, contract),
        _identifiers(body, asks.giver, contract) if asks.giver else (),
    )


def _identifiers(body: etree._Element, local: str, contract: ReadContract) -> tuple[str, ...]:
    nodes = body.iterfind(contract.interaction.qualified(local))
    if contract.asks.ii:
        return tuple(text(n.find(contract.c("extension"))).strip() for n in nodes)
    return tuple(text(n).strip() for n in nodes)


# --- answers ---------------------------------------------------------------------------------

def answer(contract: ReadContract, documents: Iterable[Mapping[str, Any]]) -> etree._Element:
    """The contract's answer holding ``documents`` (project JSON documents)."""
    i, ns, shape = contract.interaction, contract.core_ns, contract.shape
    root = etree.Element(i.response, nsmap={"tns": i.responder_ns, "core": ns})
    for document in documents:
        record = etree.SubElement(root, i.qualified(contract.record))
        header = document["header"]
        shape.write(etree.SubElement(record, contract.c(contract.header)), header, ns)
        body = etree.SubElement(record, contract.c(contract.body))
        values = document["body"]
        order = contract.body_elements or tuple(values)
        for name in order:
            if name in values:
                append_json(body, f"{{{ns}}}{name}", values[name], ns)
        _extend(body, {k: v for k, v in values.items() if k not in order})
        _extend(record, {k: v for k, v in header.items() if k not in shape.fields})
    if contract.result:
        result = etree.SubElement(root, i.qualified("result"))
        etree.SubElement(result, contract.c("resultCode")).text = "OK"
        etree.SubElement(result, contract.c("logId")).text = str(uuid.uuid4())
    return root


def _extend(parent: etree._Element, fields: Mapping[str, Any]) -> None:
    """Fields the contract has no element for, as its extension point allows (elements of another
    namespace at the end of the type), each one's value as JSON text: nothing is lost."""
    for name, value in fields.items():
        node = etree.SubElement(parent, EXTENSION, nsmap={"npo": EXTENSION_NS})
        node.set("name", name)
        node.text = json.dumps(value, ensure_ascii=False)


def result_code(contract: ReadContract, response: etree._Element) -> str | None:
    """The answer's ``result/resultCode`` (OK, INFO, ERROR), None for a contract without one."""
    if not contract.result:
        return None
    return text(response.find(f"{contract.interaction.qualified('result')}/{contract.c('resultCode')}"))


def documents(contract: ReadContract, response: etree._Element, patient_id: str = "") -> list[Json]:
    """The answer's records as project JSON documents (KeyError-free: missing parts are ''); a
    contract whose records name no patient answers for the asked one, ``patient_id``."""
    i, ns = contract.interaction, contract.core_ns
    asked_for = {"id": patient_id, "type": patient_type(patient_id)}
    found = []
    for record in response.iterfind(i.qualified(contract.record)):
        header = record.find(contract.c(contract.header))
        body = record.find(contract.c(contract.body))
        fields = {} if header is None else contract.shape.read(header, ns)
        if not contract.shape.patient:
            fields["patientId"] = asked_for
        fields.update(_extensions(record))
        values = {} if body is None else as_json(body, skip=EXTENSION)
        if body is not None:
            values.update(_extensions(body))
        found.append({"header": fields, "body": values})
    return found


def _extensions(parent: etree._Element) -> Json:
    found: Json = {}
    for node in parent.iterfind(EXTENSION):
        try:
            found[node.get("name") or ""] = json.loads(node.text or "null")
        except ValueError:
            continue  # not ours to understand: ignored, as extensions are
    return found
