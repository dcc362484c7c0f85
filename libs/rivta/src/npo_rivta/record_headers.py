"""The read contracts' record headers, to and from the project's common header.

The common header is a JSON object in the field names of RIV-TA's patient summary header:
``documentId``, ``sourceSystemHSAId``, ``patientId`` {``id``, ``type``},
``accountableHealthcareProfessional`` {``authorTime``, ``healthcareProfessionalCareUnitHSAId``,
``healthcareProfessionalCareGiverHSAId``, …}, ``approvedForPatient`` (a boolean). Three families
of contracts carry it three ways:

- the patient summary header (most contracts): the same names, the element order per domain
  (``careContactId`` before ``nullified`` in healthcond:description 2, actoutcome 3 and
  activityprescription:actoutcome 2; after ``nullifiedReason`` in actoutcome 2 and
  logistics:logistics 3) and GetCareDocumentation 2's spelling ``sourceSystemHSAid``;
- actoutcome 4's header (GetLaboratoryOrderOutcome): access control (accountable care giver
  and unit, patient), source system and record, identifiers as II (root + extension);
- crm:requeststatus 2's header (GetRequestActivities): like actoutcome 4's, with
  ``accountableHealthcareProvider``, ``sourceSystemId`` and an author, and no patient per record
  (the answer is the asked patient's: ``HeaderShape.patient`` is False).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from npo_platform.identifiers import InvalidPatientId, PatientId, PatientIdKind
from npo_rivta.xml import text

Json = dict[str, Any]
HSA_OID = "1.2.752.129.2.1.4.1"  # the root of an HSA-id as an II
PERSONNUMMER_OID = "1.2.752.129.2.1.3.1"
SAMORDNINGSNUMMER_OID = "1.2.752.129.2.1.3.3"
PROFESSIONAL = "accountableHealthcareProfessional"
_PROFESSIONAL_ORDER = ("authorTime", "healthcareProfessionalHSAId", "healthcareProfessionalName",
                       "healthcareProfessionalRoleCode", "healthcareProfessionalOrgUnit",
                       "healthcareProfessionalCareUnitHSAId", "healthcareProfessionalCareGiverHSAId")
_BOOLEANS = frozenset({"approvedForPatient", "nullified"})
# The common header's own keys, carried by the JOL-style headers (the rest travel as extensions).
CORE_FIELDS = frozenset({"documentId", "sourceSystemHSAId", "patientId", PROFESSIONAL,
                         "approvedForPatient"})


def patient_type(patient_id: str) -> str:
    """The OID of the id's kind (personnummer unless it is a valid samordningsnummer)."""
    try:
        kind = PatientId.parse(patient_id).kind
    except InvalidPatientId:
        return PERSONNUMMER_OID
    return SAMORDNINGSNUMMER_OID if kind is PatientIdKind.SAMORDNINGSNUMMER else PERSONNUMMER_OID


def _person(value: Mapping[str, Any]) -> dict[str, str]:
    """A header's ``patientId`` with its type (the JSON record contract may leave it out)."""
    patient = str(value.get("id", ""))
    return {"id": patient, "type": str(value.get("type") or patient_type(patient))}


@dataclass(frozen=True)
class HeaderShape:
    """How one family of record headers maps to the common header."""

    read: Callable[[etree._Element, str], Json]
    write: Callable[[etree._Element, Mapping[str, Any], str], None]
    fields: frozenset[str]  # the common header's keys it carries
    patient: bool = True  # whether each record names its patient


# --- the patient summary header --------------------------------------------------------------

def summary(order: tuple[str, ...], source: str = "sourceSystemHSAId") -> HeaderShape:
    """A patient summary header with its elements in ``order`` and the source system spelt
    ``source``."""

    def read(node: etree._Element, ns: str) -> Json:
        header = as_json(node)
        if source in header and source != "sourceSystemHSAId":
            header["sourceSystemHSAId"] = header.pop(source)
        for name in _BOOLEANS & header.keys():
            header[name] = header[name] == "true"
        return header

    def write(node: etree._Element, header: Mapping[str, Any], ns: str) -> None:
        for name in order:
            if name not in header:
                continue
            value = header[name]
            tag = f"{{{ns}}}{source if name == 'sourceSystemHSAId' else name}"
            if name == PROFESSIONAL:
                _ordered(etree.SubElement(node, tag), value, _PROFESSIONAL_ORDER, ns)
            elif name == "patientId":
                _ordered(etree.SubElement(node, tag), _person(value), ("id", "type"), ns)
            else:
                append_json(node, tag, value, ns)

    return HeaderShape(read, write, frozenset(order))


def _ordered(node: etree._Element, value: Mapping[str, Any], order: tuple[str, ...],
             ns: str) -> None:
    for part in order:
        if part in value:
            append_json(node, f"{{{ns}}}{part}", value[part], ns)


_SUMMARY_HEAD = ("documentId", "sourceSystemHSAId", "documentTitle", "documentTime", "patientId",
                 PROFESSIONAL, "legalAuthenticator", "approvedForPatient")
SUMMARY = summary((*_SUMMARY_HEAD, "careContactId", "nullified", "nullifiedReason"))
SUMMARY_CONTACT_LAST = summary((*_SUMMARY_HEAD, "nullified", "nullifiedReason", "careContactId"))
CARE_DOCUMENTATION_HEADER = summary(
    (*_SUMMARY_HEAD, "careContactId", "nullified", "nullifiedReason"), source="sourceSystemHSAid")


# --- actoutcome 4's header (GetLaboratoryOrderOutcome) ---------------------------------------

def ii(node: etree._Element, tag: str, ns: str, root: str, extension: str) -> None:
    element = etree.SubElement(node, f"{{{ns}}}{tag}")
    etree.SubElement(element, f"{{{ns}}}root").text = root
    etree.SubElement(element, f"{{{ns}}}extension").text = extension


def _finder(node: etree._Element, ns: str) -> Callable[[str], str]:
    def find(path: str) -> str:
        return text(node.find("/".join(f"{{{ns}}}{step}" for step in path.split("/"))))

    return find


def _record(node: etree._Element, header: Mapping[str, Any], ns: str) -> None:
    """The record element both II-style headers end with: its id and its time."""
    record = etree.SubElement(node, f"{{{ns}}}record")
    ii(record, "id", ns, HSA_OID, header["documentId"])
    etree.SubElement(record, f"{{{ns}}}timestamp").text = header[PROFESSIONAL]["authorTime"]


def _outcome_write(node: etree._Element, header: Mapping[str, Any], ns: str) -> None:
    professional, patient = header[PROFESSIONAL], _person(header["patientId"])
    access = etree.SubElement(node, f"{{{ns}}}accessControlHeader")
    ii(access, "accountableCareGiver", ns, HSA_OID,
       professional.get("healthcareProfessionalCareGiverHSAId", ""))
    ii(access, "accountableCareUnit", ns, HSA_OID,
       professional.get("healthcareProfessionalCareUnitHSAId", ""))
    ii(etree.SubElement(access, f"{{{ns}}}patient"), "id", ns, patient["type"], patient["id"])
    etree.SubElement(access, f"{{{ns}}}approvedForPatient").text = _bool(
        header.get("approvedForPatient"))
    ii(etree.SubElement(node, f"{{{ns}}}source"), "systemId", ns, HSA_OID,
       header["sourceSystemHSAId"])
    _record(node, header, ns)


def _outcome_read(node: etree._Element, ns: str) -> Json:
    find = _finder(node, ns)
    return {
        "documentId": find("record/id/extension"),
        "sourceSystemHSAId": find("source/systemId/extension"),
        "patientId": {"id": find("accessControlHeader/patient/id/extension"),
                      "type": find("accessControlHeader/patient/id/root")},
        PROFESSIONAL: {
            "authorTime": find("record/timestamp"),
            "healthcareProfessionalCareUnitHSAId": find("accessControlHeader/accountableCareUnit/extension"),
            "healthcareProfessionalCareGiverHSAId": find(
                "accessControlHeader/accountableCareGiver/extension"),
        },
        "approvedForPatient": find("accessControlHeader/approvedForPatient") == "true",
    }


OUTCOME_HEADER = HeaderShape(_outcome_read, _outcome_write, CORE_FIELDS)


# --- crm:requeststatus 2's header (GetRequestActivities) -------------------------------------

def _request_write(node: etree._Element, header: Mapping[str, Any], ns: str) -> None:
    professional = header[PROFESSIONAL]
    access = etree.SubElement(node, f"{{{ns}}}accessControlHeader")
    ii(access, "accountableHealthcareProvider", ns, HSA_OID,
       professional.get("healthcareProfessionalCareGiverHSAId", ""))
    unit = professional.get("healthcareProfessionalCareUnitHSAId")
    if unit:
        ii(access, "accountableCareUnit", ns, HSA_OID, unit)
    etree.SubElement(access, f"{{{ns}}}blockComparisonTime").text = professional["authorTime"]
    etree.SubElement(access, f"{{{ns}}}approvedForPatient").text = _bool(
        header.get("approvedForPatient"))
    ii(node, "sourceSystemId", ns, HSA_OID, header["sourceSystemHSAId"])
    _record(node, header, ns)


def _request_read(node: etree._Element, ns: str) -> Json:
    find = _finder(node, ns)
    return {
        "documentId": find("record/id/extension"),
        "sourceSystemHSAId": find("sourceSystemId/extension"),
        "patientId": {"id": "", "type": ""},  # not in the record: the asked patient's
        PROFESSIONAL: {
            "authorTime": find("record/timestamp"),
            "healthcareProfessionalCareUnitHSAId": find("accessControlHeader/accountableCareUnit/extension"),
            "healthcareProfessionalCareGiverHSAId": find(
                "accessControlHeader/accountableHealthcareProvider/extension"),
        },
        "approvedForPatient": find("accessControlHeader/approvedForPatient") == "true",
    }


REQUEST_STATUS_HEADER = HeaderShape(_request_read, _request_write, CORE_FIELDS, patient=False)


# --- JSON <-> elements -----------------------------------------------------------------------

def as_json(node: etree._Element, *, skip: str = "") -> Json:
    """An element's children as JSON: an element with children is an object of its children
    (a repeated name a list), a leaf its text."""
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
