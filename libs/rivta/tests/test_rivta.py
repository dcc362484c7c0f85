"""npo_rivta without a server: safe parsing, envelopes and faults, headers, schemas, codecs."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import xmlschema
from lxml import etree

from npo_platform.categories import CATEGORIES, by_key
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.identifiers import make_personnummer
from npo_rivta import engagementindex as ei
from npo_rivta import records, wsdl
from npo_rivta.contracts import (
    ENGAGEMENT_INDEX_INTERACTIONS,
    FIND_CONTENT,
    READ_INTERACTIONS,
    UPDATE,
)
from npo_rivta.headers import (
    CausingAgent,
    PlatformHeaders,
    SourceStatus,
    StatusCode,
    SynchError,
    logical_address,
    logical_address_header,
    processing_status,
    processing_status_header,
)
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_rivta.records import ReadContract
from npo_rivta.soap import SoapFault, envelope, fault, read_envelope, read_fault
from npo_rivta.xml import XmlRejected, parse

ENGAGEMENT = Engagement(
    registered_resident_identification="191212121212", service_domain="riv:x", categorization="voo",
    logical_address="SE1", business_object_instance_identifier="NA",
    clinical_process_interest_id="NA", most_recent_content="20260101120000", source_system="SE2",
    data_controller="SE3", owner="SE4",
)


@pytest.mark.parametrize(("data", "code"), [
    (b"<a><b></a>", "xml.malformed"),
    (b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', "xml.dtd_forbidden"),
    (b'<?xml version="1.0"?><!-- c --><!DOCTYPE a><a/>', "xml.dtd_forbidden"),
    (b"<a>" * 65 + b"</a>" * 65, "xml.too_deep"),
    (b"<a>" * 300 + b"</a>" * 300, "xml.too_deep"),
    (b"<a>" + b" " * 100 + b"</a>", "xml.too_large"),
])
def test_unsafe_or_broken_documents_are_refused_with_a_stable_code(data: bytes, code: str) -> None:
    with pytest.raises(XmlRejected) as refused:
        parse(data, max_bytes=100 if code == "xml.too_large" else 1_000_000)
    assert refused.value.code == code


def test_an_entity_is_never_resolved_even_where_the_doctype_check_cannot_see_it() -> None:
    utf16 = '<!DOCTYPE a [<!ENTITY x "expanded">]><a>&x;</a>'.encode("utf-16")
    with pytest.raises(XmlRejected) as refused:
        parse(utf16)
    assert refused.value.code == "xml.dtd_forbidden"


def test_an_envelope_round_trips_with_its_logical_address() -> None:
    body = ei.transactions_request(UPDATE, [EngagementTransaction(engagement=ENGAGEMENT)])
    env = read_envelope(parse(envelope(body, [logical_address_header("SE5565594230-NPOIDX")])))
    assert logical_address(env) == "SE5565594230-NPOIDX"
    assert env.body.tag == UPDATE.request
    assert read_fault(env) is None
    [tx] = ei.transactions(env.body, UPDATE)
    assert tx.engagement == ENGAGEMENT
    assert not tx.delete_flag


def test_a_fault_carries_its_code_in_the_string_and_the_detail() -> None:
    received = read_fault(read_envelope(parse(fault("EI002", "same key"))))
    assert received is not None
    assert (received.faultcode, received.faultstring, received.code) == (
        "soap:Client", "EI002: same key", "EI002")
    server = read_fault(read_envelope(parse(SoapFault("x", "y", client=False).to_bytes())))
    assert server is not None
    assert server.faultcode == "soap:Server"


@pytest.mark.parametrize("data", [b"<a/>", b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'/>"])
def test_what_is_not_an_envelope_with_one_body_element_is_refused(data: bytes) -> None:
    with pytest.raises(SoapFault) as refused:
        read_envelope(parse(data))
    assert refused.value.code == "soap.not_envelope"


@pytest.mark.parametrize("interaction", [*ENGAGEMENT_INDEX_INTERACTIONS, *READ_INTERACTIONS],
                         ids=lambda i: i.name)
def test_every_wsdl_and_its_schemas_are_valid_for_an_independent_xsd_processor(interaction) -> None:  # type: ignore[no-untyped-def]
    schema = xmlschema.XMLSchema(str(wsdl._SCHEMAS / interaction.schema))
    assert schema.elements[interaction.name.split("}")[-1]] is not None
    document = etree.fromstring(wsdl.wsdl_bytes(interaction, "http://h/p"))
    ns = {"w": wsdl.WSDL_NS, "s": wsdl.WSDL_SOAP_NS}
    assert document.xpath("//s:operation/@soapAction", namespaces=ns) == [interaction.soap_action]
    assert document.xpath("//s:address/@location", namespaces=ns) == ["http://h/p"]
    locations = document.xpath("//*[local-name()='import']/@schemaLocation")
    assert all(loc.startswith("http://h/p?xsd=") for loc in locations)


def test_what_the_codecs_write_is_valid_for_an_independent_xsd_processor() -> None:
    update = ei.transactions_request(UPDATE, [EngagementTransaction(engagement=ENGAGEMENT)])
    stamped = Engagement()
    stamped.CopyFrom(ENGAGEMENT)
    stamped.update_time.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    found = ei.find_content_response([stamped])
    for interaction, element in ((UPDATE, update), (FIND_CONTENT, found),
                                 (UPDATE, ei.result_response(UPDATE))):
        xmlschema.XMLSchema(str(wsdl._SCHEMAS / interaction.schema)).validate(
            etree.tostring(element).decode())
        assert wsdl.schema_errors(interaction, element) == []
    [back] = ei.find_content_engagements(found)
    assert back == ENGAGEMENT
    assert found[0].findtext(f"{{{ei.EI_NS}}}updateTime") == "20260102030405"


def test_schema_errors_name_the_rule_but_not_the_value() -> None:
    bad = Engagement()
    bad.CopyFrom(ENGAGEMENT)
    bad.registered_resident_identification = "19121212XXXX"
    errors = wsdl.schema_errors(UPDATE, ei.transactions_request(
        UPDATE, [EngagementTransaction(engagement=bad)]))
    assert errors
    assert "registeredResidentIdentification" in errors[0]
    assert "19121212XXXX" not in " ".join(errors)


def test_processing_status_round_trips_and_is_valid() -> None:
    sources = [
        SourceStatus("SE1", StatusCode.DATA_FROM_SOURCE, last_successful_synch="20260101120000"),
        SourceStatus("SE2", StatusCode.NO_DATA_SYNCH_FAILED, last_unsuccessful_synch="20260101120001",
                     error=SynchError(CausingAgent.SERVICE_PRODUCER, 504, "timeout")),
    ]
    block = processing_status_header(sources)
    xmlschema.XMLSchema(str(wsdl._SCHEMAS / "interoperability_headers_1.0.xsd")).validate(
        etree.tostring(block).decode())
    env = read_envelope(parse(envelope(etree.Element("x"), [block])))
    assert processing_status(env) == sources
    assert (sources[0].from_cache, sources[0].in_synch, sources[1].in_synch) == (False, True, False)


def test_platform_headers_keep_well_formed_values_and_give_a_missing_correlation_id() -> None:
    given = PlatformHeaders.of({"x-rivta-original-serviceconsumer-hsaid": "SE2321000016-ABC",
                                "x-skltp-correlation-id": "c-1"})
    assert given.outgoing() == {"x-skltp-correlation-id": "c-1",
                                "x-rivta-original-serviceconsumer-hsaid": "SE2321000016-ABC"}
    odd = PlatformHeaders.of({"x-rivta-original-serviceconsumer-hsaid": "<script>"})
    assert odd.original_consumer is None
    assert len(odd.correlation_id) == 32


_LAB = {"resultattyp": {"code": "DEF"}, "laboratorieid": {"root": "1", "extension": "U"},
        "svarsrapportid": {"root": "1", "extension": "D1"}, "svarstidpunkt": "20250101120000",
        "ansvarigtLabb": {"orgUnit": {"x": "U"}}, "svarsmottagare": {"orgUnit": {"x": "U"}}}
# The smallest body each contract's schema accepts (its mandatory elements), by category.
MINIMAL_BODIES: dict[str, dict[str, object]] = {
    "notes": {}, "laboratory": _LAB, "diagnoses": {"typeOfDiagnosis": "Huvuddiagnos"},
    "medications": {"medicationPrescription": {"prescriptionStatus": "Active"}},
    "imaging": {"typeOfResult": "DEF", "resultTime": "20250101120000", "resultReport": "r"},
    "consultations": {"referralOutcomeTypeCode": "SR", "referralOutcomeText": "t",
                      "referral": {"referralId": "R"}},
    "alerts": {"typeOfAlertInformation": {"code": "upp"},
               "validityTimePeriod": {"start": "20250101120000"}},
    "care_contacts": {}, "vaccinations": {"registrationRecord": {"x": "y"},
                                          "administrationRecord": {"a": "1"}},
    "functional_status": {"assessmentCategory": "pad-pad"}, "care_plans": {},
    "maternity": {}, "ecg": {},
    "referral_flow": {"statusCode": {"code": "2"}, "eventTime": "20250101120000",
                      "request": {"id": "R"}},
}
HEADER = {"documentId": "D1", "sourceSystemHSAId": "SE2321000016-S",
          "patientId": {"id": "191212121212", "type": "1.2.752.129.2.1.3.1"},
          "accountableHealthcareProfessional": {
              "authorTime": "20250101120000", "healthcareProfessionalCareUnitHSAId": "U",
              "healthcareProfessionalCareGiverHSAId": "G"},
          "approvedForPatient": True}


def _valid(contract: ReadContract, element: etree._Element) -> None:
    assert wsdl.schema_errors(contract.interaction, element) == []
    xmlschema.XMLSchema(str(wsdl._SCHEMAS / contract.interaction.schema)).validate(
        etree.tostring(element).decode())


def test_every_category_with_a_national_contract_has_its_read_contract() -> None:
    assert set(READ_CONTRACTS) == {c.key for c in CATEGORIES if not c.project_defined}
    assert {c.interaction for c in READ_CONTRACTS.values()} == set(READ_INTERACTIONS)
    for category, contract in READ_CONTRACTS.items():
        assert contract.interaction.name == by_key(category).contract


@pytest.mark.parametrize("contract", list(READ_CONTRACTS.values()), ids=lambda c: c.category)
def test_a_document_survives_every_read_contract_and_its_schema(contract: ReadContract) -> None:
    bodies = {**MINIMAL_BODIES, "notes": {"clinicalDocumentNote": {
        "clinicalDocumentNoteTitle": "Epikris", "clinicalDocumentNoteText": "text"}},
        "laboratory": {**_LAB, "svarsgrupp": [{"discipline": {"code": "a"}},
                                              {"discipline": {"code": "b"}}]}}
    document = {"header": HEADER, "body": bodies[contract.category]}
    answer = records.answer(contract, [document])
    _valid(contract, answer)
    received = etree.fromstring(etree.tostring(answer))
    assert records.documents(contract, received, "191212121212") == [document]
    assert records.result_code(contract, received) == ("OK" if contract.result else None)
    coordination = make_personnummer(date(1980, 5, 17), 42, coordination=True)
    question = records.request(contract, coordination, source_system="S", care_units=["U"],
                               care_givers=["G"])
    _valid(contract, question)
    assert records.asked(contract, question) == records.Asked(
        coordination, records.SAMORDNINGSNUMMER_OID, "S", ("U",),
        ("G",) if contract.asks.giver else ())
    assert records.patient_type("191212121212") == records.PERSONNUMMER_OID


@pytest.mark.parametrize("contract", list(READ_CONTRACTS.values()), ids=lambda c: c.category)
def test_fields_outside_the_contract_travel_whole_and_the_answer_stays_valid(
    contract: ReadContract,
) -> None:
    header = {**HEADER, "socialServices": True}
    extra = {"clinicalDocumentNoteTitle": "Biståndsbeslut", "legalBasis": "SoL",
             "relatives": [{"relation": "make/maka", "phone": "+46 73"}], "room": 7}
    # The contract's own elements need not come first; a body taken whole (ECG) keeps them all.
    body = {**extra, **MINIMAL_BODIES[contract.category]}
    answer = records.answer(contract, [{"header": header, "body": body}])
    _valid(contract, answer)
    [back] = records.documents(contract, etree.fromstring(etree.tostring(answer)), "191212121212")
    assert back["header"] == header
    if contract.body_elements:
        assert back["body"] == body
    else:  # taken whole: every field an element of the body, texts as text
        assert back["body"] == {**body, "room": "7", "relatives": body["relatives"][0]}


def _variant(**fields: str) -> EngagementTransaction:
    engagement = Engagement()
    engagement.CopyFrom(ENGAGEMENT)
    for name, value in fields.items():
        setattr(engagement, name, value)
    return EngagementTransaction(engagement=engagement)


def _request(transactions: list[EngagementTransaction], *, comment: bool = False,
             empty_owner: bool = False, extension: bool = False) -> bytes:
    """An Update of ``transactions`` as it arrives: bytes, read by ``parse``. ``comment`` splits
    the first transaction's owner ("SE4" + comment + "-more"); ``empty_owner`` leaves the last
    one's owner an empty element; ``extension`` adds an element of another namespace holding
    an owner of its own."""
    body = ei.transactions_request(UPDATE, transactions)
    owners = body.findall(f".//{{{ei.EI_NS}}}owner")
    if comment:
        owners[0].append(etree.Comment("split"))
        owners[0][-1].tail = "-more"
    if empty_owner:
        owners[-1].text = None
    if extension:
        extra = etree.SubElement(body[0], "{urn:x}extra")
        etree.SubElement(extra, f"{{{ei.EI_NS}}}owner").text = "not an owner"
    return etree.tostring(body)


_FULL = [EngagementTransaction(engagement=ENGAGEMENT), _variant(categorization="dia"),
         EngagementTransaction(delete_flag=True, engagement=ENGAGEMENT)]


@pytest.mark.parametrize(("transactions", "options", "owners"), [
    (_FULL, {}, ["SE4", "SE4", "SE4"]),
    ([*_FULL, _variant(most_recent_content="", owner="")], {}, ["SE4", "SE4", "SE4", ""]),
    (_FULL, {"comment": True}, ["SE4-more", "SE4", "SE4"]),
    (_FULL, {"empty_owner": True}, ["SE4", "SE4", ""]),
    (_FULL, {"extension": True}, ["SE4", "SE4", "SE4"]),
    ([_variant(owner="", clinical_process_interest_id="")] * 3, {}, ["", "", ""]),
], ids=["every field", "optional fields missing", "comment splits a text", "empty element",
        "extension element", "a field no transaction has"])
def test_transactions_read_by_column_equal_those_read_one_by_one(
    transactions: list[EngagementTransaction], options: dict[str, bool], owners: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The column reading and the element-by-element reading of the same request give the same
    transactions, whichever fields are missing, empty, split by a comment or extended."""
    body = parse(_request(transactions, **options))
    one_by_one = ei._one_by_one(body, UPDATE)
    if not options.get("comment"):  # only a comment needs the element-by-element reading
        monkeypatch.setattr(ei, "_one_by_one", None)
    by_column = ei.transactions(body, UPDATE)
    assert by_column == one_by_one
    assert [tx.engagement.owner for tx in by_column] == owners
    assert [tx.delete_flag for tx in by_column] == [tx.delete_flag for tx in transactions]
    for decoded, sent in zip(by_column, transactions, strict=True):
        decoded.engagement.owner = sent.engagement.owner
        assert decoded == sent  # every other field as sent
