"""The FHIR AuditEvent search over the real database: parameters, paging, roles, errors, validity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from audit_fixtures import GIVER, OFFICE_TIME, READER, UNIT, access_event, patient, relation_history, token
from fastapi import FastAPI

from npo_audit.config import AuditSettings
from npo_audit.domain import access_entry
from npo_audit.fhir_search_pages import KEY_FILE, PageTokens
from npo_audit.fhir_search_params import parse
from npo_audit.main import create_app
from npo_audit.store_pg_fhir import Position
from npo_deploy.fhir_checks import balp_problems, bundle_problems
from npo_deploy.fhir_validator import FhirValidator
from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome
from npo_platform.fhir import FHIR_JSON, HSA_ID_SYSTEM, PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import PRIVATE_KEY_FILE, Principal, Role, issue_token

pytestmark = pytest.mark.integration
ALICE, BOB = patient(1), patient(2)
CAROL = make_personnummer(date(1990, 5, 17), 123, coordination=True)  # a samordningsnummer
OTHER_READER, OTHER_UNIT = "SE2321000016-9002", "SE2321000016-1002"
SEARCH = "/fhir/r4/AuditEvent/_search"
# ALICE's outcomes at OFFICE_TIME + i hours; two more the night before, two the day after.
OUTCOMES = [AccessOutcome.ALLOWED, AccessOutcome.ALLOWED, AccessOutcome.ALLOWED, AccessOutcome.PARTIAL,
            AccessOutcome.ALLOWED, AccessOutcome.DENIED, AccessOutcome.ALLOWED, AccessOutcome.NOT_DELIVERED,
            AccessOutcome.ALLOWED, AccessOutcome.ALLOWED]
LATE_UTC = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)  # 00:30 on the 10th in Stockholm
EARLIER_UTC = datetime(2026, 3, 9, 22, 30, tzinfo=UTC)  # 23:30 on the 9th in Stockholm
NEXT_DAY = OFFICE_TIME + timedelta(days=1)
ALICE_RECORDS = len(OUTCOMES) + 4


@pytest.fixture
async def app(audit_settings: AuditSettings) -> AsyncIterator[FastAPI]:
    application = create_app(audit_settings)
    async with application.router.lifespan_context(application):
        store = application.state.audit.store
        alice = [access_event(ALICE, at=OFFICE_TIME + timedelta(hours=i), outcome=outcome)
                 for i, outcome in enumerate(OUTCOMES)]
        alice += [access_event(ALICE, at=LATE_UTC), access_event(ALICE, at=EARLIER_UTC)]
        alice += [access_event(ALICE, at=NEXT_DAY + timedelta(minutes=m), user=OTHER_READER, unit=OTHER_UNIT)
                  for m in (0, 1)]
        others = [access_event(BOB, at=OFFICE_TIME, basis=AccessBasis.EMERGENCY),
                  access_event(CAROL, at=OFFICE_TIME, user=OTHER_READER, unit=OTHER_UNIT)]
        await store.append("access-p0", [access_entry(e) for e in alice + others])
        await store.append("consent-p0", relation_history(BOB))
        yield application


@pytest.fixture
def officer(audit_settings: AuditSettings) -> dict[str, str]:
    return _auth(audit_settings, Role.COMPLIANCE_OFFICER)


def _auth(settings: AuditSettings, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings.keys_dir, role, patient_id=ALICE)}"}


async def _search(client: httpx.AsyncClient, headers: dict[str, str], *params: tuple[str, str],
                  expected: int = 200) -> dict[str, Any]:
    answer = await client.post(SEARCH, content=urlencode(params), headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == expected, answer.text
    assert answer.headers["content-type"] == FHIR_JSON
    found: dict[str, Any] = answer.json()
    return found


def _events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _patients(event: dict[str, Any]) -> set[str]:
    return {e["what"]["identifier"]["value"] for e in event["entity"]
            if e["what"].get("type") == "Patient"}


def _agents(event: dict[str, Any]) -> set[str]:
    return {a["who"]["identifier"]["value"] for a in event["agent"] if "identifier" in a["who"]}


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


async def test_search_by_patient_in_the_form_body(client: httpx.AsyncClient, officer: dict[str, str]) -> None:
    bundle = await _search(client, officer, ("patient", f"{PERSONNUMMER_SYSTEM}|{ALICE}"))

    events = _events(bundle)
    assert len(events) == ALICE_RECORDS
    assert all(_patients(e) == {ALICE} for e in events)
    recorded = [e["recorded"] for e in events]
    assert recorded == sorted(recorded, reverse=True)
    assert _link(bundle, "next") is None
    assert _link(bundle, "previous") is None
    bob = _events(await _search(client, officer, ("patient:identifier", BOB)))
    assert sorted(e["subtype"][0]["code"] for e in bob) == ["create", "create", "read", "update"]
    assert [e["outcome"] for e in bob if e["subtype"][0]["code"] == "create"].count("8") == 1


async def test_a_samordningsnummer_is_found_under_its_own_system(
    client: httpx.AsyncClient, officer: dict[str, str]
) -> None:
    found = _events(await _search(client, officer, ("patient", f"{SAMORDNINGSNUMMER_SYSTEM}|{CAROL}")))
    assert [_patients(e) for e in found] == [{CAROL}]
    wrong = await _search(client, officer, ("patient", f"{PERSONNUMMER_SYSTEM}|{CAROL}"), expected=400)
    assert _code(wrong) == "search.patient_system_mismatch"


@pytest.mark.parametrize(("values", "expected"), [
    ([READER], ALICE_RECORDS - 2 + 1 + 3),  # ALICE's but two, BOB's read and consent records
    ([f"{HSA_ID_SYSTEM}|{OTHER_UNIT}"], 3),
    ([OTHER_READER, UNIT], 0),  # both must hold
    ([f"{OTHER_READER},{READER}", OTHER_UNIT], 3),  # either reader, at the other unit
    ([GIVER], ALICE_RECORDS + 2 + 3),
])
async def test_search_by_agent(
    client: httpx.AsyncClient, officer: dict[str, str], values: list[str], expected: int
) -> None:
    events = _events(await _search(client, officer, *(("agent", v) for v in values)))

    assert len(events) == expected
    for value in values:
        wanted = {v.rpartition("|")[2] for v in value.split(",")}
        assert all(_agents(e) & wanted for e in events)


@pytest.mark.parametrize(("dates", "expected"), [
    (["2026-03-10"], len(OUTCOMES) + 1),  # a Swedish day: 00:30 local is 23:30 UTC the day before
    (["2026-03-10T00:00:00Z"], 0),
    (["ge2026-03-10T09:00:00Z", "lt2026-03-10T12:00Z"], 3),
    (["gt2026-03-10", "le2026-03-11"], 2),
    (["le2026-03-09"], 1),
    (["lt2026-03-10T10:00+01:00"], 2),  # the night's two: 09:00 UTC is not before itself
    (["eq2026-03-10T10:00"], 1),  # a minute, Swedish time: 09:00 UTC
    (["2026-03"], ALICE_RECORDS),
    (["2026", "gt2026-03-10T17:00:00.5Z"], 3),
])
async def test_search_by_date(
    client: httpx.AsyncClient, officer: dict[str, str], dates: list[str], expected: int
) -> None:
    events = _events(await _search(client, officer, ("patient", ALICE), *(("date", d) for d in dates)))
    assert len(events) == expected, [e["recorded"] for e in events]


async def test_search_by_outcome_matches_the_rendered_code(
    client: httpx.AsyncClient, officer: dict[str, str]
) -> None:
    everything = _events(await _search(client, officer, ("_count", "1000")))
    counts = {}
    for code in ("0", "4", "8", "12"):
        events = _events(await _search(client, officer, ("outcome", code), ("_count", "1000")))
        assert {e["outcome"] for e in events} <= {code}
        counts[code] = len(events)

    assert counts == {"0": len(everything) - 4, "4": 1, "8": 3, "12": 0}  # denied, not delivered, refused
    either = _events(await _search(client, officer, ("outcome", "4,8"), ("patient", ALICE)))
    assert sorted(e["outcome"] for e in either) == ["4", "8", "8"]


async def test_paging_returns_every_entry_exactly_once_both_ways(
    client: httpx.AsyncClient, officer: dict[str, str]
) -> None:
    whole = [e["id"] for e in _events(await _search(client, officer, ("patient", ALICE)))]
    pages = [await _search(client, officer, ("patient", ALICE), ("_count", "4"))]
    while (following := _link(pages[-1], "next")) is not None:
        answer = await client.get(following, headers=officer)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())

    assert [len(_events(p)) for p in pages] == [4, 4, 4, 2]
    assert [e["id"] for p in pages for e in _events(p)] == whole
    back = [pages[-1]]
    while (preceding := _link(back[-1], "previous")) is not None:
        back.append((await client.get(preceding, headers=officer)).json())
    assert [_ids(p) for p in back] == [_ids(p) for p in pages[::-1]]
    again = (await client.get(str(_link(pages[1], "self")), headers=officer)).json()
    assert _events(again) == _events(pages[1])
    exact = await _search(client, officer, ("patient", ALICE), ("_count", str(ALICE_RECORDS)))
    assert _link(exact, "next") is None  # no empty page after a full one


async def test_paging_links_carry_no_personal_identity_number(
    client: httpx.AsyncClient, officer: dict[str, str], audit_settings: AuditSettings
) -> None:
    first = await _search(client, officer, ("patient", ALICE), ("_count", "2"))
    second = (await client.get(str(_link(first, "next")), headers=officer)).json()

    urls = [link["url"] for bundle in (first, second) for link in bundle["link"]]
    assert {link["relation"] for link in second["link"]} == {"self", "next", "previous"}
    forms = {ALICE, ALICE[2:], f"{ALICE[:8]}-{ALICE[8:]}", f"{ALICE[2:8]}-{ALICE[8:]}", ALICE[:8]}
    assert [u for u in urls if any(form in u for form in forms)] == []
    assert all(u.startswith("http://npo-audit.test/fhir/r4/AuditEvent?_page=") for u in urls)
    other_officer = {"Authorization": f"Bearer {_other_officer_token(audit_settings)}"}
    stolen = await client.get(str(_link(first, "next")), headers=other_officer)
    assert (stolen.status_code, _code(stolen.json())) == (400, "search.page_invalid")


def _other_officer_token(settings: AuditSettings) -> str:
    principal = Principal(sub="SE2321000016-7002", name="Otto Other",
                          roles=frozenset({Role.COMPLIANCE_OFFICER}))
    return issue_token((settings.keys_dir / PRIVATE_KEY_FILE).read_bytes(), principal, timedelta(minutes=5))


async def test_a_page_token_expires_and_cannot_be_forged(audit_settings: AuditSettings) -> None:
    key = audit_settings.keys_dir / KEY_FILE
    tokens = PageTokens.in_dir(audit_settings.keys_dir, ttl_s=3600)
    search = parse([("patient", ALICE), ("date", "ge2026-03-10")]).search
    issued = tokens.issue("SE2321000016-7001", search, Position())
    assert tokens.open(issued, "SE2321000016-7001")[0].patients == frozenset({ALICE})
    assert key.stat().st_mode & 0o777 == 0o600
    expired = PageTokens(key.read_bytes(), ttl_s=-1)
    for broken, tried in ((expired, issued), (tokens, issued[:-4] + "AAAA"), (tokens, "not-a-token")):
        with pytest.raises(Exception, match="not one issued to you") as refused:
            broken.open(tried, "SE2321000016-7001")
        assert getattr(refused.value, "status", None) == 400


async def test_only_compliance_officers_search(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    for role in (Role.CLINICIAN, Role.PATIENT, Role.OPERATOR, Role.ADMIN):
        for answer in (await client.post(SEARCH, headers=_auth(audit_settings, role)),
                       await client.get("/fhir/r4/AuditEvent", headers=_auth(audit_settings, role))):
            assert answer.status_code == 403, answer.text
            assert answer.headers["content-type"] == FHIR_JSON
            assert _code(answer.json()) == "role.missing"
            assert answer.json()["issue"][0]["code"] == "forbidden"
    unauthenticated = await client.post(SEARCH, content=urlencode({"patient": ALICE}), headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["resourceType"] == "OperationOutcome"
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")


async def test_a_patient_in_a_url_is_refused(client: httpx.AsyncClient, officer: dict[str, str]) -> None:
    for answer in (await client.get("/fhir/r4/AuditEvent", params={"patient": ALICE}, headers=officer),
                   await client.post(SEARCH, params={"patient:identifier": ALICE}, headers=officer)):
        assert answer.status_code == 400
        assert _code(answer.json()) == "search.patient_in_url"
        assert ALICE not in answer.text
    without = await client.get("/fhir/r4/AuditEvent", params={"agent": OTHER_READER}, headers=officer)
    assert len(_events(without.json())) == 3


@pytest.mark.parametrize(("params", "code"), [
    ([("patinet", ALICE)], "search.parameter_unsupported"),
    ([("_sort", "date")], "search.parameter_unsupported"),
    ([("patient", "")], "search.value_missing"),
    ([("patient", ALICE[:-1] + str((int(ALICE[-1]) + 1) % 10))], "search.patient_invalid"),
    ([("patient", f"urn:oid:1.2.3|{ALICE}")], "search.system_unsupported"),
    ([("agent", "somebody")], "search.agent_invalid"),
    ([("date", "2026-13-01")], "search.date_invalid"),
    ([("date", "2026-02-30")], "search.date_invalid"),
    ([("date", "yesterday")], "search.date_invalid"),
    ([("date", "2026-03-10T10:00+25:00")], "search.date_invalid"),
    ([("date", "ap2026-03-10")], "search.date_prefix_unsupported"),
    ([("outcome", "1")], "search.outcome_invalid"),
    ([("_count", "0")], "search.count_invalid"),
    ([("_count", "-3")], "search.count_invalid"),
    ([("_count", "ten")], "search.count_invalid"),
    ([("_count", "5"), ("_count", "6")], "search.count_invalid"),
    ([("_page", "not-a-token")], "search.page_invalid"),
    ([("_page", "")], "search.page_invalid"),
    ([("_page", "x"), ("patient", ALICE)], "search.page_with_parameters"),
    ([("_format", "xml")], "search.format_unsupported"),
])
async def test_bad_parameters_answer_400_with_an_operation_outcome(
    client: httpx.AsyncClient, officer: dict[str, str], params: list[tuple[str, str]], code: str
) -> None:
    found = await _search(client, officer, *params, expected=400)
    assert found["resourceType"] == "OperationOutcome"
    assert _code(found) == code
    assert ALICE not in str(found)


async def test_a_body_that_is_not_a_form_is_refused(
    client: httpx.AsyncClient, officer: dict[str, str]
) -> None:
    answer = await client.post(SEARCH, json={"patient": ALICE}, headers=officer)
    assert (answer.status_code, _code(answer.json())) == (415, "search.media_type")
    big = await client.post(SEARCH, content="agent=" + "x" * 20_000, headers={
        **officer, "Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    assert big.json()["resourceType"] == "OperationOutcome"


async def test_lenient_handling_ignores_unknown_parameters_and_says_so(
    client: httpx.AsyncClient, officer: dict[str, str]
) -> None:
    answer = await client.post(SEARCH, content=urlencode({"patient": CAROL, "_elements": "id"}), headers={
        **officer, "Content-Type": "application/x-www-form-urlencoded", "Prefer": "handling=lenient"})
    bundle = answer.json()

    assert len(_events(bundle)) == 1
    [outcome] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["severity"] == "warning"
    assert "_elements" in outcome["issue"][0]["details"]["text"]


async def test_a_search_is_logged_as_the_compliance_search_is(
    app: FastAPI, client: httpx.AsyncClient, officer: dict[str, str]
) -> None:
    """Neither search writes a record: both are traced as their HTTP request only."""
    queries = app.state.audit.queries
    before = await queries.pool.fetchval("SELECT count(*) FROM record")
    await client.post("/audit/search", json={"patient_id": ALICE}, headers=officer)
    after_json = await queries.pool.fetchval("SELECT count(*) FROM record")
    await _search(client, officer, ("patient", ALICE))
    assert await queries.pool.fetchval("SELECT count(*) FROM record") - after_json == after_json - before


async def test_every_searchset_is_valid_fhir_in_balp_shape(
    client: httpx.AsyncClient, officer: dict[str, str], fhir_validator: FhirValidator
) -> None:
    first = await _search(client, officer, ("patient", ALICE), ("_count", "5"))
    bundles = [
        first, (await client.get(str(_link(first, "next")), headers=officer)).json(),
        await _search(client, officer, ("patient", BOB)),
        await _search(client, officer, ("agent", OTHER_READER), ("outcome", "0")),
        await _search(client, officer, ("outcome", "12")),  # empty
        (await client.post(SEARCH, content="patient=" + CAROL + "&_total=accurate", headers={
            **officer, "Content-Type": "application/x-www-form-urlencoded",
            "Prefer": "handling=lenient"})).json(),
    ]
    for bundle in bundles:
        assert [str(e) for e in fhir_validator.errors(bundle)] == []
        assert bundle_problems(bundle) == []
        for event in _events(bundle):
            assert balp_problems(event) == [], event
    assert sum(len(_events(b)) for b in bundles) > 10


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["id"] for e in _events(bundle)]


def _code(outcome: dict[str, Any]) -> str:
    return str(outcome["issue"][0]["details"]["coding"][0]["code"])
