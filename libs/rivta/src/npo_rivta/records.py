"""Read contracts' records from and to the project's JSON documents.

A document is ``{"header": …, "body": …}``. The header is the project's common one, in the
field names of RIV-TA's patient summary header: ``documentId``, ``sourceSystemHSAId``,
``patientId`` {``id``, ``type``}, ``accountableHealthcareProfessional`` {``authorTime``,
``healthcareProfessionalCareUnitHSAId``, ``healthcareProfessionalCareGiverHSAId``, …},
``approvedForPatient`` (a boolean); each contract maps its own header to and from it. The body
is the contract's body element as JSON: an element with children is an object of its children
(a repeated name a list), a leaf its text; written back in the object's order, which for a
schema-valid document is the contract's. Fields the contract has no element for (a body key
outside the body type, a header key outside the contract's header: the project's social-services
marker, for one) travel whole as JSON text in an extension element (``urn:npo:rivta:extension:1``
``field``, where the contract's types allow other namespaces). So a document survives JSON → XML
→ JSON unchanged when its body's contract elements hold strings, objects and lists of two or
more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from npo_platform.identifiers import InvalidPatientId, PatientId, PatientIdKind
from npo_rivta.contracts import GET_CARE_DOCUMENTATION, GET_LABORATORY_ORDER_OUTCOME, Interaction
from npo_rivta.xml import text

Json = dict[str, Any]
PERSONNUMMER_OID = "1.2.752.129.2.1.3.1"
SAMORDNINGSNUMMER_OID = "1.2.752.129.2.1.3.3"
HSA_OID = "1.2.752.129.2.1.4.1"  # the root of an HSA-id as an II
EXTENSION_NS = "urn:npo:rivta:extension:1"
EXTENSION = f"{{{EXTENSION_NS}}}field"


def patient_type(patient_id: str) -> str:
    """The OID of the id's kind (personnummer unless it is a valid samordningsnummer)."""
    try:
        kind = PatientId.parse(patient_id).kind
    except InvalidPatientId:
        return PERSONNUMMER_OID
    return SAMORDNINGSNUMMER_OID if kind is PatientIdKind.SAMORDNINGSNUMMER else PERSONNUMMER_OID


@dataclass(frozen=True)
class ReadContract:
    """One read contract: its interaction, the category it serves and how its records look."""

    interaction: Interaction
    category: str  # npo_platform.categories key
    core_ns: str
    record: str  # the answer's record element (responder namespace)
    header: str  # the record's header and body elements (core namespace)
    body: str
    request_fields: tuple[str, str, str]  # care unit, care giver ("" when none), source system
    header_in: Callable[[etree._Element, str], Json]
    header_out: Callable[[etree._Element, Mapping[str, Any], str], None]
    body_elements: frozenset[str]  # the body type's own elements; other keys travel as extensions
    header_fields: frozenset[str]  # the common header's keys the contract's header carries

    def _c(self, local: str) -> str:
        return f"{{{self.core_ns}}}{local}"


# --- the patient summary header (description 2: GetCareDocumentation) -----------------------

_SUMMARY_ORDER = ("documentId", "sourceSystemHSAId", "documentTitle", "documentTime", "patientId",
                  "accountableHealthcareProfessional", "legalAuthenticator", "approvedForPatient",
                  "careContactId", "nullified", "nullifiedReason")
_PROFESSIONAL_ORDER = ("authorTime", "healthcareProfessionalHSAId", "healthcareProfessionalName",
                       "healthcareProfessionalRoleCode", "healthcareProfessionalOrgUnit",
                       "healthcareProfessionalCareUnitHSAId", "healthcareProfessionalCareGiverHSAId")
_BOOLEANS = frozenset({"approvedForPatient", "nullified"})
_SOURCE_C = "sourceSystemHSAid"  # CPatientSummaryHeaderType's spelling of sourceSystemHSAId


def _summary_in(node: etree._Element, ns: str) -> Json:
    header = as_json(node)
    if _SOURCE_C in header:
        header["sourceSystemHSAId"] = header.pop(_SOURCE_C)
    for name in _BOOLEANS & header.keys():
        header[name] = header[name] == "true"
    return header


def _summary_out(node: etree._Element, header: Mapping[str, Any], ns: str) -> None:
    for name in _SUMMARY_ORDER:
        if name not in header:
            continue
        value = header[name]
        tag = f"{{{ns}}}{_SOURCE_C if name == 'sourceSystemHSAId' else name}"
        if name == "accountableHealthcareProfessional":
            child = etree.SubElement(node, tag)
            for part in _PROFESSIONAL_ORDER:
                if part in value:
                    append_json(child, f"{{{ns}}}{part}", value[part], ns)
        else:
            append_json(node, tag, value, ns)


# --- the common header of actoutcome 4 (GetLaboratoryOrderOutcome) --------------------------

def _ii(node: etree._Element, tag: str, ns: str, root: str, extension: str) -> None:
    ii = etree.SubElement(node, f"{{{ns}}}{tag}")
    etree.SubElement(ii, f"{{{ns}}}root").text = root
    etree.SubElement(ii, f"{{{ns}}}extension").text = extension


def _jol_out(node: etree._Element, header: Mapping[str, Any], ns: str) -> None:
    professional, patient = header["accountableHealthcareProfessional"], header["patientId"]
    access = etree.SubElement(node, f"{{{ns}}}accessControlHeader")
    _ii(access, "accountableCareGiver", ns, HSA_OID,
        professional["healthcareProfessionalCareGiverHSAId"])
    _ii(access, "accountableCareUnit", ns, HSA_OID, professional["healthcareProfessionalCareUnitHSAId"])
    _ii(etree.SubElement(access, f"{{{ns}}}patient"), "id", ns, patient["type"], patient["id"])
    etree.SubElement(access, f"{{{ns}}}approvedForPatient").text = _bool(header["approvedForPatient"])
    _ii(etree.SubElement(node, f"{{{ns}}}source"), "systemId", ns, HSA_OID,
        header["sourceSystemHSAId"])
    record = etree.SubElement(node, f"{{{ns}}}record")
    _ii(record, "id", ns, HSA_OID, header["documentId"])
    etree.SubElement(record, f"{{{ns}}}timestamp").text = professional["authorTime"]


def _jol_in(node: etree._Element, ns: str) -> Json:
    def find(path: str) -> str:
        return text(node.find("/".join(f"{{{ns}}}{step}" for step in path.split("/"))))

    patient = node.find(f"{{{ns}}}accessControlHeader/{{{ns}}}patient/{{{ns}}}id")
    return {
        "documentId": find("record/id/extension"),
        "sourceSystemHSAId": find("source/systemId/extension"),
        "patientId": {"id": text(None if patient is None else patient.find(f"{{{ns}}}extension")),
                      "type": text(None if patient is None else patient.find(f"{{{ns}}}root"))},
        "accountableHealthcareProfessional": {
            "authorTime": find("record/timestamp"),
            "healthcareProfessionalCareUnitHSAId": find("accessControlHeader/accountableCareUnit/extension"),
            "healthcareProfessionalCareGiverHSAId": find(
                "accessControlHeader/accountableCareGiver/extension"),
        },
        "approvedForPatient": find("accessControlHeader/approvedForPatient") == "true",
    }


CARE_DOCUMENTATION = ReadContract(
    GET_CARE_DOCUMENTATION, "notes", "urn:riv:clinicalprocess:healthcond:description:2",
    "careDocumentation", "careDocumentationHeader", "careDocumentationBody",
    ("careUnitHSAid", "", "sourceSystemHSAid"), _summary_in, _summary_out,
    frozenset({"clinicalDocumentNote"}), frozenset(_SUMMARY_ORDER),
)
LABORATORY_ORDER_OUTCOME = ReadContract(
    GET_LABORATORY_ORDER_OUTCOME, "laboratory", "urn:riv:clinicalprocess:healthcond:actoutcome:4",
    "laboratoryOrderOutcome", "laboratoryOrderOutcomeHeader", "laboratoryOrderOutcomeBody",
    ("careUnitHSAId", "careGiverHSAId", "sourceSystemHSAId"), _jol_in, _jol_out,
    frozenset({"resultattyp", "resultatrapport", "resultatkommentar", "laboratorieid",
               "svarsrapportid", "svarstidpunkt", "patientinformation", "presentation", "remiss",
               "ansvarigtLabb", "svarsmottagare", "kopiemottagare", "vidimering", "svarsgrupp"}),
    frozenset({"documentId", "sourceSystemHSAId", "patientId", "accountableHealthcareProfessional",
               "approvedForPatient"}),
)
READ_CONTRACTS: Mapping[str, ReadContract] = {c.category: c for c in (CARE_DOCUMENTATION,
                                                                       LABORATORY_ORDER_OUTCOME)}


# --- requests and answers -------------------------------------------------------------------

def request(contract: ReadContract, patient_id: str, *, source_system: str = "",
            care_units: Iterable[str] = (), care_givers: Iterable[str] = ()) -> etree._Element:
    """The contract's request for one patient, optionally narrowed to a source system."""
    i, ns = contract.interaction, contract.core_ns
    root = etree.Element(i.request, nsmap={"tns": i.responder_ns, "core": ns})
    unit, giver, source = contract.request_fields
    for value in care_units:
        etree.SubElement(root, i.qualified(unit)).text = value
    for value in care_givers if giver else ():
        etree.SubElement(root, i.qualified(giver)).text = value
    person = etree.SubElement(root, i.qualified("patientId"))
    etree.SubElement(person, f"{{{ns}}}id").text = patient_id
    etree.SubElement(person, f"{{{ns}}}type").text = patient_type(patient_id)
    if source_system:
        etree.SubElement(root, i.qualified(source)).text = source_system
    return root


@dataclass(frozen=True)
class Asked:
    """What a received request asks (the simulator and the aggregating front end read it)."""

    patient_id: str
    source_system: str


def asked(contract: ReadContract, body: etree._Element) -> Asked:
    i, ns = contract.interaction, contract.core_ns
    return Asked(text(body.find(f"{i.qualified('patientId')}/{{{ns}}}id")),
                 text(body.find(i.qualified(contract.request_fields[2]))))


def answer(contract: ReadContract, documents: Iterable[Mapping[str, Any]]) -> etree._Element:
    """The contract's answer holding ``documents`` (project JSON documents)."""
    i, ns = contract.interaction, contract.core_ns
    root = etree.Element(i.response, nsmap={"tns": i.responder_ns, "core": ns})
    for document in documents:
        record = etree.SubElement(root, i.qualified(contract.record))
        header = document["header"]
        contract.header_out(etree.SubElement(record, contract._c(contract.header)), header, ns)
        body = etree.SubElement(record, contract._c(contract.body))
        values = document["body"]
        for name in [k for k in values if k in contract.body_elements]:
            append_json(body, f"{{{ns}}}{name}", values[name], ns)
        _extend(body, {k: v for k, v in values.items() if k not in contract.body_elements})
        _extend(record, {k: v for k, v in header.items() if k not in contract.header_fields})
    return root


def _extend(parent: etree._Element, fields: Mapping[str, Any]) -> None:
    """Fields the contract has no element for, as its extension point allows (elements of another
    namespace at the end of the type), each one's value as JSON text: nothing is lost."""
    for name, value in fields.items():
        node = etree.SubElement(parent, EXTENSION, nsmap={"npo": EXTENSION_NS})
        node.set("name", name)
        node.text = json.dumps(value, ensure_ascii=False)


def documents(contract: ReadContract, response: etree._Element) -> list[Json]:
    """The answer's records as project JSON documents (KeyError-free: missing parts are '')."""
    i, ns = contract.interaction, contract.core_ns
    found = []
    for record in response.iterfind(i.qualified(contract.record)):
        header = record.find(contract._c(contract.header))
        body = record.find(contract._c(contract.body))
        fields = {} if header is None else contract.header_in(header, ns)
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


# --- JSON <-> elements ----------------------------------------------------------------------

def as_json(node: etree._Element, *, skip: str = "") -> Json:
    """An element's children as JSON (see the module's docstring)."""
    found: Json = {}
    for child in node:
        if not isinstance(child.tag, str) or child.tag == skip:
            continue  # comments, extensions read apart
        name = etree.QName(child).localname
        value: Any = as_json(child) if len(child) else (child.text or "")
        if name in found:
            kept = found[name]
            found[name] = [*kept, value] if isinstance(kept, list) else [kept, value]
        else:
            found[name] = value
    return found


def append_json(parent: etree._Element, tag: str, value: Any, ns: str) -> None:
    """``value`` as element(s) ``tag`` under ``parent``; objects' keys become ``ns`` children."""
    if isinstance(value, list):
        for item in value:
            append_json(parent, tag, item, ns)
        return
    node = etree.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for name, item in value.items():
            append_json(node, f"{{{ns}}}{name}", item, ns)
    elif isinstance(value, bool):
        node.text = _bool(value)
    elif value is not None:
        node.text = str(value)


def _bool(value: object) -> str:
    return "true" if value is True or value == "true" else "false"
