"""The overview for FHIR clients across the real services (tests/national.py: index, consent, query,
audit and the simulated producers, the real broker and database), checked by HAPI FHIR's
validator and by the IPS and searchset rules the validator cannot fetch (npo_deploy.fhir_checks).

Patients are chosen so that together their records render as every resource kind the query
emits. For each, the clinician's JSON overview, a FHIR search of every type and the IPS $summary
must answer the same records, each read must be logged exactly once (refusals too), and a block
must be told in FHIR as in JSON: that blocked information exists, never where.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from npo_bench.nation import Nation, running_nation
from npo_deploy.fhir_checks import ips_problems, searchset_problems
from npo_deploy.fhir_validator import FhirValidator
from npo_deploy.testing import report_validated
from npo_platform.categories import by_number
from npo_platform.fhir import PERSONNUMMER_SYSTEM, patient_id_system
from npo_platform.identity import Principal, Role
from npo_query.fhir_ips import IPS_CATEGORIES
from npo_query.fhir_outcomes import BLOCKED_TEXT
from npo_query.fhir_records import identity_of
from npo_query.fhir_types import FHIR_TYPES
from npo_simulator.content import document

pytestmark = pytest.mark.integration
WAIT_S = 30
STRANGER = Principal(
    sub="SE2321000016-S007", name="Dr Sven Stranger", roles=frozenset({Role.CLINICIAN}),
    care_unit="SE2321000016-ORT7", care_giver="SE2321000016-RG07", assignment="A7", purpose="care",
)


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        query_options={"decision_cache_ttl_s": 120.0}) as running:
        yield running


def _kinds(nation: Nation, patient: str) -> set[str]:
    """What the patient's records render as: the category, an alert as allergy or flag."""
    found = set()
    for records in nation.producers_of(patient).values():
        for record in records:
            key = by_number(record.category).key
            if key == "alerts":
                kind = document(record)["body"]["typeOfAlertInformation"]  # a coded value
                text = str(kind["displayName"] if isinstance(kind, dict) else kind)
                key += ":allergy" if text.startswith("Överkänslighet") else ":flag"
            found.add(key)
    return found


@pytest.fixture(scope="module")
def patients(nation: Nation) -> list[str]:
    """Few patients whose records together are of every kind the population holds."""
    every = set().union(*(_kinds(nation, p.patient_id) for p in nation.source.people))
    chosen, covered = [], set[str]()
    for person in sorted(nation.source.people, key=lambda p: -len(_kinds(nation, p.patient_id))):
        new = _kinds(nation, person.patient_id) - covered
        if new and person.patient_id != nation.patient:
            chosen.append(person.patient_id)
            covered |= new
    assert covered == every
    assert {"alerts:allergy", "alerts:flag", "growth", "notes", "diagnoses"} <= covered
    return chosen


def _post(http: httpx.Client, nation: Nation, url: str, who: Principal | Role, expected: int = 200,
          **body: Any) -> httpx.Response:
    answer = http.post(url, headers=nation.headers(who), **body)
    assert answer.status_code == expected, answer.text
    return answer


def _relate(http: httpx.Client, nation: Nation, patient: str) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    clinician = nation.people[Role.CLINICIAN]
    consent = {"patient_id": patient, "valid_to": later, "care_unit": clinician.care_unit}
    for path, body in (("relations", {"patient_id": patient}), ("consents", consent)):
        _post(http, nation, f"{nation.consent}/v1/{path}", Role.CLINICIAN, 201, json=body)


def _identities(overview: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((r["documentId"], r["sourceSystem"]) for r in overview["records"])


def _valid(validator: FhirValidator, resource: dict[str, Any]) -> None:
    assert [str(issue) for issue in validator.errors(resource)] == [], resource.get("resourceType")


def _reads(http: httpx.Client, nation: Nation, patient: str,
           who: Principal | Role = Role.CLINICIAN) -> dict[str, httpx.Response]:
    """The patient read every way: JSON (all categories and the summary's), each FHIR type, $summary."""
    identifier = f"{patient_id_system(patient)}|{patient}"
    reads = {"json": http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                               headers=nation.headers(who)),
             "json-ips": http.post(f"{nation.query}/v1/overview", headers=nation.headers(who),
                                   json={"patientId": patient, "categories": IPS_CATEGORIES})}
    for kind in FHIR_TYPES:
        reads[kind] = http.post(f"{nation.query}/fhir/r4/{kind}/_search", data={"patient": identifier},
                                headers=nation.headers(who))
    reads["$summary"] = http.post(f"{nation.query}/fhir/r4/Patient/$summary", data={"identifier": identifier},
                                  headers=nation.headers(who))
    return reads


def _logged(http: httpx.Client, nation: Nation, patient: str, at_least: int) -> list[dict[str, Any]]:
    """The patient's access records at the audit service, once ``at_least`` have arrived."""
    deadline = time.monotonic() + WAIT_S
    while True:
        answer = _post(http, nation, f"{nation.audit}/audit/search", Role.COMPLIANCE_OFFICER,
                       json={"patient_id": patient, "kind": "access"})
        items: list[dict[str, Any]] = answer.json()["items"]
        if len(items) >= at_least or time.monotonic() > deadline:
            time.sleep(1.0)  # a duplicate would arrive about as late: look once more
            return _post(http, nation, f"{nation.audit}/audit/search", Role.COMPLIANCE_OFFICER,
                         json={"patient_id": patient, "kind": "access"}).json()["items"]
        time.sleep(0.3)


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _issues(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue of each outcome entry (one each)."""
    entries = bundle.get("entry", [])
    return [i for e in entries if e["search"]["mode"] == "outcome" for i in e["resource"]["issue"]]


def _is_record(resource: dict[str, Any]) -> bool:
    return str(resource.get("identifier", [{}])[0].get("system", "")).startswith("urn:npo:document:")


def _event(bundle: dict[str, Any]) -> str:
    return str(bundle["identifier"]["value"]).removeprefix("urn:uuid:")


def test_fhir_answers_are_valid_and_the_json_overviews_records_each_read_logged_once(
    nation: Nation, patients: list[str], fhir_validator: FhirValidator
) -> None:
    before = fhir_validator.resources
    emitted: set[str] = set()
    with httpx.Client(timeout=60) as http:
        for patient in patients:
            _relate(http, nation, patient)
            reads = _reads(http, nation, patient)
            assert {name: r.status_code for name, r in reads.items()} == dict.fromkeys(reads, 200)
            found = []
            for kind in FHIR_TYPES:
                bundle = reads[kind].json()
                _valid(fhir_validator, bundle)
                assert searchset_problems(bundle) == []
                matches = _matches(bundle)
                found += [identity_of(r) for r in matches]
                emitted |= {r["resourceType"] for r in matches}
                emitted |= {p for r in matches for p in r.get("meta", {}).get("profile", [])}
            assert sorted(found) == _identities(reads["json"].json())
            document_ = reads["$summary"].json()
            _valid(fhir_validator, document_)
            assert ips_problems(document_) == []
            emitted |= {e["resource"]["resourceType"] for e in document_["entry"]}
            records = [identity_of(e["resource"]) for e in document_["entry"] if _is_record(e["resource"])]
            assert sorted(records) == _identities(reads["json-ips"].json())
            logged = _logged(http, nation, patient, len(reads))
            assert len(logged) == len(reads)  # one access event per read, none more
            events = {_event(reads[k].json()) for k in (*FHIR_TYPES, "$summary")}
            assert events <= {item["event_id"] for item in logged}
        metadata = http.get(f"{nation.query}/fhir/r4/metadata")  # no token: FHIR's discovery
    assert metadata.status_code == 200
    _valid(fhir_validator, metadata.json())
    assert emitted >= {*FHIR_TYPES, "Composition", "Patient", "Device", "Organization",
                       "http://hl7.org/fhir/StructureDefinition/vitalsigns"}
    report_validated("FHIR overview (searchsets, IPS documents, CapabilityStatement)",
                     fhir_validator.resources - before)


def test_a_block_and_a_failure_are_told_as_in_json_and_a_refusal_is_logged_once(
    nation: Nation, patients: list[str], fhir_validator: FhirValidator
) -> None:
    before = fhir_validator.resources
    candidates = (p.patient_id for p in nation.source.people
                  if p.patient_id not in patients and p.patient_id != nation.patient)
    patient = next(p for p in candidates if len({o.care_giver for o in nation.producers_of(p)}) >= 3)
    blocked, failing, *_ = sorted(nation.producers_of(patient), key=lambda o: o.logical_address)
    identifier = f"{PERSONNUMMER_SYSTEM}|{patient}"
    with httpx.Client(timeout=60) as http:
        _relate(http, nation, patient)
        _post(http, nation, f"{nation.consent}/v1/blocks", nation.patient_self(patient), 201,
              json={"patient_id": patient, "care_giver": blocked.care_giver})
        http.put(f"{nation.simulator}/admin/behaviour/{failing.logical_address}", json={"outage": True},
                 headers=nation.headers(Role.ADMIN)).raise_for_status()
        try:
            reads = _reads(http, nation, patient)
            refused = http.post(f"{nation.query}/fhir/r4/Condition/_search", data={"patient": identifier},
                                headers=nation.headers(STRANGER))
        finally:
            http.delete(f"{nation.simulator}/admin/behaviour",
                        headers=nation.headers(Role.ADMIN)).raise_for_status()
        logged = _logged(http, nation, patient, len(reads) + 1)
    body = reads["json"].json()
    assert body["blockedInformationExists"] is True
    json_told = sorted((p["logicalAddress"], p["category"], p["status"], p["cause"])
                       for p in body["producers"] if p["status"] != "DataFromSource" and p["logicalAddress"])
    assert (None, "WithheldByDecision") in {(p["logicalAddress"], p["status"]) for p in body["producers"]}
    fhir_told, nameless, found = [], 0, []
    for kind in FHIR_TYPES:
        bundle = reads[kind].json()
        _valid(fhir_validator, bundle)
        found += [identity_of(r) for r in _matches(bundle)]
        for issue in _issues(bundle):
            codes = [c["code"] for c in issue["details"]["coding"]]
            if "extension" in issue:
                parts = {p["url"]: p for p in issue["extension"][0]["extension"]}
                where = (parts["logicalAddress"]["valueString"], parts["category"]["valueCoding"]["code"])
                fhir_told.append((*where, *codes))
                continue
            nameless += 1
            assert codes == ["WithheldByDecision", "blocked"]
            assert blocked.logical_address not in str(issue)
            assert blocked.care_giver not in str(issue)
    assert sorted(found) == _identities(body)
    assert sorted(fhir_told) == json_told
    assert any(t[0] == failing.logical_address and t[2] == "NoDataSynchFailed" for t in fhir_told)
    assert nameless >= 1
    document_ = reads["$summary"].json()
    _valid(fhir_validator, document_)
    assert ips_problems(document_) == []
    assert blocked.logical_address not in reads["$summary"].text
    ips_json = reads["json-ips"].json()  # the summary withholds and tells as JSON does
    summarised = [identity_of(e["resource"]) for e in document_["entry"] if _is_record(e["resource"])]
    assert sorted(summarised) == _identities(ips_json)
    assert (BLOCKED_TEXT in reads["$summary"].text) == ips_json["blockedInformationExists"]
    assert refused.status_code == 403
    _valid(fhir_validator, refused.json())
    denial = refused.json()["issue"][0]["details"]["coding"]
    assert [c["code"] for c in denial] == ["access.denied", "no_relation"]
    assert len(logged) == len(reads) + 1  # the refusal too, once
    assert sum(item["outcome"] == "denied" for item in logged) == 1
    report_validated("FHIR overview, a block, a failure and a refusal", fhir_validator.resources - before)
