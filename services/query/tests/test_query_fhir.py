"""The overview for FHIR clients over the real stack (real simulated producers over HTTP, the real
broker and database; index and consent are in-memory fakes): searches and the IPS $summary answer
the JSON overview's records, statuses and access events, and refuse in FHIR's terms."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from query_fakes import FakeConsent, FakeIndex
from query_fixtures import (
    SOURCE,
    Simulator,
    access_events,
    clinician,
    index_entries,
    patient_with,
    query_app,
    running,
    targets,
)

from npo_deploy.fhir_checks import ips_problems, searchset_problems
from npo_platform.categories import by_number
from npo_platform.fhir import FHIR_JSON, PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM
from npo_query.fhir_ips import IPS_CATEGORIES
from npo_query.fhir_outcomes import PRODUCER
from npo_query.fhir_records import identity_of
from npo_query.fhir_types import FHIR_TYPES

pytestmark = pytest.mark.integration
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _app(config: Any, patient: str, consent: FakeConsent | None = None) -> Any:
    return query_app(config, FakeIndex({patient: index_entries(patient)}), consent or FakeConsent())


async def _search(client: httpx.AsyncClient, kind: str, form: dict[str, str],
                  headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(f"/fhir/r4/{kind}/_search", data=form,
                             headers=clinician() if headers is None else headers)


def _patient(patient: str) -> dict[str, str]:
    return {"patient": f"{PERSONNUMMER_SYSTEM}|{patient}"}


async def _json(client: httpx.AsyncClient, patient: str, categories: list[str] | None = None) -> Any:
    answer = await client.post("/v1/overview", json={"patientId": patient, "categories": categories or []},
                               headers=clinician())
    assert answer.status_code == 200, answer.text
    return answer.json()


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"]["issue"][0] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]


async def test_the_searches_of_every_type_answer_the_json_overviews_records_each_once(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=3)
    config = make()
    async with running(_app(config, patient)) as client:
        expected = {(r["documentId"], r["sourceSystem"]) for r in (await _json(client, patient))["records"]}
        found: list[tuple[str, str]] = []
        events = []
        for kind in FHIR_TYPES:
            answer = await _search(client, kind, _patient(patient))
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == FHIR_JSON
            bundle = answer.json()
            assert searchset_problems(bundle) == []
            assert {r["resourceType"] for r in _matches(bundle)} <= {kind}
            assert _outcomes(bundle) == []
            found += [identity_of(r) for r in _matches(bundle)]
            events.append(bundle["identifier"]["value"].removeprefix("urn:uuid:"))
    assert sorted(found) == sorted(expected)  # every record once, in its type
    assert len(expected) > 3
    written = await access_events(kafka_bootstrap_servers, config.access_topic, 1 + len(FHIR_TYPES))
    assert set(events) <= {e.meta.event_id for e in written}  # one access event per search


async def test_failed_and_withheld_producers_are_outcome_entries_and_a_block_names_nothing(
    make: Any, fresh: Simulator
) -> None:
    patient = patient_with(min_producers=3)
    entries = index_entries(patient)
    addresses = sorted({e.logical_address for e in entries})
    blocked = next(e.data_controller for e in entries if e.logical_address == addresses[0])
    await fresh.behave(addresses[1], outage=True)
    async with running(_app(make(), patient, FakeConsent(blocked={blocked}))) as client:
        body = await _json(client, patient)
        bundles = [(await _search(client, kind, _patient(patient))).json() for kind in FHIR_TYPES]
    told = [(p["logicalAddress"], p["category"], p["status"], p["cause"]) for p in body["producers"]
            if p["status"] != "DataFromSource"]
    issues = [issue for bundle in bundles for issue in _outcomes(bundle)]
    described = [issue for issue in issues if "extension" in issue]
    nameless = [issue for issue in issues if "extension" not in issue]
    assert any(t[2] == "NoDataSynchFailed" for t in told)
    assert sorted(_told(issue) for issue in described) == sorted(t for t in told if t[0] is not None)
    assert {(t[2], t[3]) for t in told if t[0] is None} == {("WithheldByDecision", "blocked")}
    assert nameless  # each search tells that blocked information exists, and nothing of where
    for issue in nameless:
        assert [c["code"] for c in issue["details"]["coding"]] == ["WithheldByDecision", "blocked"]
        assert addresses[0] not in str(issue)
        assert blocked not in str(issue)
    assert {issue["code"] for issue in described} == {"transient"}  # the outage: HTTP 503
    assert all(b["type"] == "searchset" for b in bundles)


def _told(issue: dict[str, Any]) -> tuple[str, str, str, str]:
    parts = {p["url"]: p for p in issue["extension"][0]["extension"]}
    status, cause = (c["code"] for c in issue["details"]["coding"])
    assert issue["extension"][0]["url"] == PRODUCER
    return parts["logicalAddress"]["valueString"], parts["category"]["valueCoding"]["code"], status, cause


async def test_a_denied_read_is_a_403_operation_outcome_and_is_logged(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=2)
    config = make()
    async with running(_app(config, patient, FakeConsent(deny_all="no_relation"))) as client:
        searched = await _search(client, "Condition", _patient(patient))
        summarised = await client.post("/fhir/r4/Patient/$summary", headers=clinician(),
                                       data={"identifier": f"{PERSONNUMMER_SYSTEM}|{patient}"})
    for answer in (searched, summarised):
        assert answer.status_code == 403, answer.text
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        [issue] = outcome["issue"]  # without a relation, no producer is told of
        assert [c["code"] for c in issue["details"]["coding"]] == ["access.denied", "no_relation"]
        assert patient not in answer.text
    assert fresh.counter.calls == {}
    written = await access_events(kafka_bootstrap_servers, config.access_topic, 2)
    assert [e.patient_id for e in written] == [patient, patient]


async def test_a_search_narrows_the_read_by_category_and_keeps_the_records_of_its_date(
    make: Any, fresh: Simulator
) -> None:
    patient = next(p.patient_id for p in SOURCE.population
                   if {"laboratory", "diagnoses"} <= {c for _, c in targets(p.patient_id)}
                   and sum(c == "notes" for _, c in _records(p.patient_id)) >= 3)
    async with running(_app(make(), patient)) as client:
        lab = await _search(client, "Observation", {**_patient(patient), "category": "laboratory"})
        called = {category for _, category in fresh.counter.calls}
        every = _matches((await _search(client, "DocumentReference", _patient(patient))).json())
        days = sorted(r["date"][:10] for r in every)
        since = days[len(days) // 2]
        dated = await _search(client, "DocumentReference", {**_patient(patient), "date": f"ge{since}"})
    assert lab.status_code == dated.status_code == 200
    assert called == {"laboratory"}
    assert {r["code"]["text"] for r in _matches(lab.json())}
    kept = {identity_of(r) for r in _matches(dated.json())}
    assert kept == {identity_of(r) for r in every if r["date"][:10] >= since}
    assert 0 < len(kept) < len(every)


def _records(patient: str) -> list[tuple[str, str]]:
    person = SOURCE.person(patient)
    assert person is not None
    return [(r.producer.logical_address, by_number(r.category).key)
            for r in SOURCE.histories.of(person) if not r.social_services]


async def test_the_summary_is_an_ips_document_of_the_json_overviews_records(make: Any) -> None:
    patient = patient_with(min_producers=3)
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "identifier", "valueIdentifier": {"system": PERSONNUMMER_SYSTEM, "value": patient}}]}
    async with running(_app(make(), patient)) as client:
        body = await _json(client, patient, IPS_CATEGORIES)
        by_form = await client.post("/fhir/r4/Patient/$summary", headers=clinician(),
                                    data={"identifier": f"{PERSONNUMMER_SYSTEM}|{patient}"})
        by_parameters = await client.post("/fhir/r4/Patient/$summary", json=parameters,
                                          headers={**clinician(), "Content-Type": FHIR_JSON})
    expected = sorted((r["documentId"], r["sourceSystem"]) for r in body["records"])
    for answer in (by_form, by_parameters):
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert ips_problems(document) == []
        records = [e["resource"] for e in document["entry"] if "identifier" in e["resource"]
                   and e["resource"]["resourceType"] not in ("Patient", "Organization")]
        assert sorted(identity_of(r) for r in records) == expected
        codes = [s["code"]["coding"][0]["code"] for s in document["entry"][0]["resource"]["section"]]
        assert codes[:3] == ["11450-4", "48765-2", "10160-0"]


async def test_bad_fhir_requests_are_operation_outcomes_that_never_quote_the_number(make: Any) -> None:
    patient = patient_with(min_producers=2)
    coordination = f"{patient[:6]}{int(patient[6:8]) + 60}{patient[8:]}"
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("Condition/_search", {"data": {}}, 400, "search.patient_required"),
        ("Condition/_search", {"data": {"patient": patient, "_count": "5"}}, 400,
         "search.parameter_unsupported"),
        ("Condition/_search", {"data": {"patient": f"{SAMORDNINGSNUMMER_SYSTEM}|{patient}"}}, 400,
         "search.patient_system_mismatch"),
        ("Condition/_search", {"data": {"patient": f"urn:x|{patient}"}}, 400, "search.system_unsupported"),
        ("Condition/_search", {"data": {"patient": coordination}}, 400, "search.patient_invalid"),
        ("Observation/_search", {"data": {"patient": patient, "category": "imaging"}}, 400,
         "search.category_unknown"),
        ("Observation/_search", {"data": {"patient": patient, "date": "2024-13"}}, 400,
         "search.date_invalid"),
        ("Condition/_search?patient=" + patient, {"data": {}}, 400, "search.patient_in_url"),
        ("Condition/_search", {"json": {"patient": patient}}, 415, "search.media_type"),
        ("Basic/_search", {"data": {"patient": patient}}, 400, "request.invalid"),
        ("Patient/$summary", {"data": {"patient": patient}}, 400, "summary.parameter_unsupported"),
        ("Patient/$summary", {"json": {"resourceType": "Patient"}}, 400, "summary.body_invalid"),
        ("Patient/$summary", {"data": {"identifier": patient, "profile": "urn:x"}}, 400,
         "summary.profile_unsupported"),
    ]
    async with running(_app(make(), patient)) as client:
        for path, body, status, code in cases:
            answer = await client.post(f"/fhir/r4/{path}", headers=clinician(), **body)
            assert (answer.status_code, _code(answer)) == (status, code), (path, answer.text)
            assert answer.headers["content-type"] == FHIR_JSON
            assert patient not in answer.text
            assert coordination not in answer.text
        lenient = await client.post("/fhir/r4/Condition/_search", data={"patient": patient, "_count": "5"},
                                    headers={**clinician(), "Prefer": "handling=lenient"})
        anonymous = await client.post("/fhir/r4/Condition/_search", data={"patient": patient})
    assert lenient.status_code == 200
    assert [c["code"] for i in _outcomes(lenient.json()) for c in i["details"]["coding"]] == [
        "search.parameter_ignored"]
    assert (anonymous.status_code, _code(anonymous)) == (401, "token.missing")


def _code(answer: httpx.Response) -> str:
    return str(answer.json()["issue"][0]["details"]["coding"][0]["code"])


async def test_the_capability_statement_needs_no_token_and_offers_every_type(make: Any) -> None:
    patient = patient_with(min_producers=2)
    async with running(_app(make(), patient)) as client:
        answer = await client.get("/fhir/r4/metadata")
    assert answer.status_code == 200
    statement = answer.json()
    [rest] = statement["rest"]
    offered = {r["type"]: r for r in rest["resource"]}
    assert set(offered) == {*FHIR_TYPES, "Patient"}
    assert offered["Patient"]["operation"][0]["name"] == "summary"
    assert all([i["code"] for i in r["interaction"]] == ["search-type"]
               for name, r in offered.items() if name != "Patient")
