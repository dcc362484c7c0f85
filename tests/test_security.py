"""Issue 21: an attacker holding a valid token, over the whole running nation (tests/national.py).

Each test is one finding of the security probe, tried through the public APIs as the probe tried
it, and fails on the code before the fix. Every test uses patients of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from npo_bench.nation import Nation, running_nation
from npo_deploy.processes import free_port
from npo_deploy.tokens import DEMO_GIVER, DEMO_UNIT
from npo_platform.categories import by_number
from npo_platform.identity import Principal, Role
from npo_query.config import QuerySettings
from npo_rivta.contracts import UPDATE
from npo_rivta.headers import logical_address_header
from npo_rivta.read_contracts import CARE_DOCUMENTATION
from npo_rivta.records import request
from npo_rivta.soap import CONTENT_TYPE, envelope, read_envelope, read_fault
from npo_rivta.xml import parse
from npo_simulator.organisations import Kind

pytestmark = pytest.mark.integration
NOTES = 8

# A clinician of another care giver than the demo clinician's (and of none the nation's producers
# are: whatever they read needs a relation and consent).
OTHER_GIVER, OTHER_UNIT = "SE2321000099-VG", "SE2321000099-VE001"
OTHER = Principal(sub="SE2321000099-L001", name="Dr Other", roles=frozenset({Role.CLINICIAN}),
                  care_unit=OTHER_UNIT, care_giver=OTHER_GIVER, assignment="A1", purpose="care")


class ProducerTokens:
    """ASGI wrapper of the simulated producers keeping the bearer tokens the query service sent."""

    def __init__(self) -> None:
        self.app: Any = None
        # the producer's logical address (JSON) or the responder's path (RIV-TA) -> the last token
        self.seen: dict[str, str] = {}

    def wrap(self, app: Any) -> ProducerTokens:
        self.app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        parts = scope.get("path", "").split("/")
        if scope["type"] == "http" and len(parts) == 4 and parts[1] == "producers":
            self.seen[parts[2]] = dict(scope["headers"]).get(b"authorization", b"").decode()
        elif scope["type"] == "http" and parts[1:2] == ["riv"]:
            self.seen[scope["path"]] = dict(scope["headers"]).get(b"authorization", b"").decode()
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def producer_tokens() -> ProducerTokens:
    return ProducerTokens()


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, producer_tokens: ProducerTokens,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        population=600, wrap_producers=producer_tokens.wrap) as running:
        yield running


@pytest.fixture(scope="module")
def _patients(nation: Nation) -> Iterator[str]:
    """People with records at a care giver other than the demo clinician's."""
    return (p.patient_id for p in nation.source.people if p.patient_id != nation.patient
            and any(o.care_giver != DEMO_GIVER for o in nation.producers_of(p.patient_id)))


@pytest.fixture
def patient(_patients: Iterator[str]) -> str:
    return next(_patients)


def later(days: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def command(http: httpx.AsyncClient, nation: Nation, path: str, body: dict[str, Any],
                  who: Principal | Role = Role.CLINICIAN) -> httpx.Response:
    return await http.post(f"{nation.consent}/v1/{path}", json=body, headers=nation.headers(who))


async def registered(http: httpx.AsyncClient, nation: Nation, path: str, body: dict[str, Any],
                     who: Principal | Role = Role.CLINICIAN) -> str:
    answer = await command(http, nation, path, body, who)
    assert answer.status_code == 201, answer.text
    record_id: str = answer.json()["record_id"]
    return record_id


def refused(answer: httpx.Response, code: str, status: int = 403) -> None:
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text


async def overview(http: httpx.AsyncClient, nation: Nation, patient: str,
                   who: Principal | Role = Role.CLINICIAN) -> httpx.Response:
    return await http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                           headers=nation.headers(who))


def holder_of(nation: Nation, patient: str) -> Principal:
    """A clinician of a care giver holding the patient's information (not the demo one)."""
    org = next(o for o in sorted(nation.producers_of(patient), key=lambda o: o.logical_address)
               if o.care_giver != DEMO_GIVER)
    return Principal(sub=f"{org.care_giver.split('-')[0]}-L900", name="Dr Holder",
                     roles=frozenset({Role.CLINICIAN}), care_unit=org.care_unit(1),
                     care_giver=org.care_giver, assignment="A1", purpose="care")


# Finding 1 (high): anyone could revoke anyone's protection.

async def test_a_block_is_revoked_only_by_its_care_giver_or_the_patient(
    nation: Nation, patient: str
) -> None:
    holder = holder_of(nation, patient)
    async with httpx.AsyncClient(timeout=30) as http:
        block = await registered(http, nation, "blocks", {"patient_id": patient,
                                                          "care_giver": holder.care_giver},
                                 nation.patient_self(patient))
        for attacker in (Role.CLINICIAN, OTHER, nation.patient_self(nation.patient)):
            refused(await command(http, nation, f"blocks/{block}/revoke", {}, attacker),
                    "record.out_of_scope")
        await registered(http, nation, "relations", {"patient_id": patient})
        await registered(http, nation, "consents", {"patient_id": patient, "care_unit": DEMO_UNIT,
                                                    "valid_to": later()})
        still = (await overview(http, nation, patient)).json()
        assert still["blockedInformationExists"] is True  # the block holds
        lifted = await command(http, nation, f"blocks/{block}/revoke", {}, holder)
        assert lifted.status_code == 200, lifted.text


async def test_relations_and_consents_are_revoked_only_by_their_own_unit(
    nation: Nation, patient: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        relation = await registered(http, nation, "relations", {"patient_id": patient})
        consent = await registered(http, nation, "consents", {
            "patient_id": patient, "care_unit": DEMO_UNIT, "valid_to": later()})
        for path in (f"relations/{relation}/revoke", f"consents/{consent}/revoke"):
            for attacker in (OTHER, nation.patient_self(patient)):
                refused(await command(http, nation, path, {}, attacker), "record.out_of_scope")
        assert (await overview(http, nation, patient)).status_code == 200  # both still hold
        for path in (f"consents/{consent}/revoke", f"relations/{relation}/revoke"):
            assert (await command(http, nation, path, {})).status_code == 200


# Finding 2 (medium): consents and blocks for somebody else.

async def test_a_consent_is_given_only_to_the_registering_unit_or_a_person_of_it(
    nation: Nation, patient: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        refused(await command(http, nation, "consents", {
            "patient_id": patient, "care_unit": OTHER_UNIT, "valid_to": later()}),
            "consent.not_own_unit")
        # A consent naming a user of another unit covers that user at the registering unit only:
        # from their own unit they are refused as without consent.
        await registered(http, nation, "consents", {"patient_id": patient, "user": OTHER.sub,
                                                    "valid_to": later()})
        await registered(http, nation, "relations", {"patient_id": patient}, OTHER)
        answer = await overview(http, nation, patient, OTHER)
    assert answer.status_code == 403, answer.text
    assert (answer.json()["code"], answer.json()["reasonCode"]) == ("access.denied", "no_consent")


async def test_a_block_is_placed_only_by_the_holding_care_giver_or_the_patient(
    nation: Nation, patient: str
) -> None:
    holder = holder_of(nation, patient)
    body = {"patient_id": patient, "care_giver": holder.care_giver}
    async with httpx.AsyncClient(timeout=30) as http:
        refused(await command(http, nation, "blocks", body), "block.not_own_care_giver")
        refused(await command(http, nation, "blocks", body, nation.patient_self(nation.patient)),
                "block.not_own_care_giver")
        assert (await command(http, nation, "blocks", body, holder)).status_code == 201
        assert (await command(http, nation, "blocks", body, nation.patient_self(patient))).status_code == 201


# Finding 3 (medium): a producer could claim another care giver.

async def test_a_producer_publishes_only_as_the_care_giver_its_token_names(
    nation: Nation, patient: str
) -> None:
    org = next(o for o in nation.source.nation.producers if o.care_giver != DEMO_GIVER)
    category = by_number(min(org.publishes))
    claimed = {"registeredResidentIdentification": patient, "serviceDomain": category.service_domain,
               "categorization": category.categorizations[0], "logicalAddress": org.logical_address,
               "businessObjectInstanceIdentifier": "claimed-1", "sourceSystem": org.source_system,
               "dataController": DEMO_GIVER}  # the reader's own care giver: read without consent
    own = {**claimed, "businessObjectInstanceIdentifier": "own-1", "dataController": org.care_giver}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{nation.index}/engagement-updates", headers=nation.headers(
            nation.producer(org)), json={"transactions": [{"engagement": own}, {"engagement": claimed}]})
        assert (answer.status_code, answer.json()["codes"]) == (403, ["EI008"]), answer.text
        found = await http.post(f"{nation.index}/find-content", headers=nation.headers(nation.aggregator),
                                json={"registeredResidentIdentification": patient,
                                      "serviceDomain": category.service_domain})
    ids = [e["businessObjectInstanceIdentifier"] for e in found.json()["engagements"]]
    assert "own-1" not in ids  # nothing of the batch applied
    assert "claimed-1" not in ids


# Finding 4 (medium): producer endpoints answered anyone; finding 7 (low): the token the query
# service sends a producer was accepted elsewhere.

async def test_producers_answer_only_the_aggregating_systems_token_bound_to_them(
    nation: Nation, producer_tokens: ProducerTokens
) -> None:
    patient = nation.patient
    org = sorted(nation.producers_of(patient), key=lambda o: o.logical_address)[0]
    category = by_number(min(org.publishes)).key
    url, body = f"{nation.simulator}/producers/{org.logical_address}/{category}", {"patientId": patient}
    async with httpx.AsyncClient(timeout=30) as http:
        for who in (nation.patient_self(nation.patient), Role.CLINICIAN, Role.OPERATOR, Role.ADMIN,
                    nation.aggregator):
            refused = await http.post(url, json=body, headers=nation.headers(who))
            assert (refused.status_code, refused.json()["code"]) == (401, "token.audience")
        await registered(http, nation, "relations", {"patient_id": patient})
        await registered(http, nation, "consents", {"patient_id": patient, "care_unit": DEMO_UNIT,
                                                    "valid_to": later()})
        producer_tokens.seen.clear()
        assert (await overview(http, nation, patient)).status_code == 200  # the query calls it
        sent = producer_tokens.seen[org.logical_address]
        assert (await http.post(url, json=body, headers={"Authorization": sent})).status_code == 200
        other = next(o for o in nation.source.nation.producers if o.logical_address != org.logical_address)
        replayed = {
            f"{nation.simulator}/producers/{other.logical_address}/{category}": body,
            f"{nation.index}/find-content": {"registeredResidentIdentification": patient,
                                             "serviceDomain": by_number(NOTES).service_domain},
            f"{nation.consent}/v1/standing": {"patient_id": patient},
            f"{nation.audit}/audit/search": {"patient_id": patient},
        }
        for target, payload in replayed.items():
            answer = await http.post(target, json=payload, headers={"Authorization": sent})
            assert (answer.status_code, answer.json()["code"]) == (401, "token.audience"), target


async def test_a_route_cannot_point_the_query_services_calls_at_internal_addresses(
    nation: Nation,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for endpoint in ("http://169.254.169.254/latest/meta-data", "http://u:p@producer.example/x",
                         "http://0x7f000001/x"):
            answer = await http.put(f"{nation.query}/v1/routing/routes", headers=nation.headers(
                Role.ADMIN), json=[{"logical_address": "SE2321000016-EVIL", "endpoint": endpoint}])
            assert answer.status_code == 422, answer.text
            assert answer.json()["code"] in ("routing.endpoint_forbidden", "routing.endpoint_invalid")


# Finding 5 (medium): unaudited index lookups.

async def test_find_content_is_refused_outside_the_overview_path(nation: Nation) -> None:
    body = {"registeredResidentIdentification": nation.patient,
            "serviceDomain": by_number(NOTES).service_domain}
    async with httpx.AsyncClient(timeout=30) as http:
        for who in (Role.OPERATOR, Role.ADMIN, Role.CLINICIAN):
            answer = await http.post(f"{nation.index}/find-content", json=body, headers=nation.headers(who))
            assert (answer.status_code, answer.json()["code"]) == (403, "find_content.not_aggregating")


# Finding 6 (medium): size. Bodies are refused before they are read: the answer comes while the
# client has sent only the headers (the old services waited for the whole body).

async def _answer_to_headers(url: str, path: str, headers: dict[str, str],
                             body_start: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    parsed = httpx.URL(url)
    reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parsed.host}", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body_start)
    await writer.drain()
    try:
        async with asyncio.timeout(15):  # far less than sending 10 MB would take
            head = await reader.readuntil(b"\r\n\r\n")
            status, *fields = head.decode().split("\r\n")
            answer = dict(f.split(": ", 1) for f in fields if ": " in f)
            body = await reader.readexactly(int(answer.get("content-length", "0")))
    finally:
        writer.close()
    return int(status.split()[1]), {k.lower(): v for k, v in answer.items()}, body


async def test_bodies_are_refused_before_they_are_read(nation: Nation) -> None:
    ten_mb = {"Content-Length": str(10 * 1024 * 1024)}
    bearer = {"Authorization": f"Bearer {nation.token(Role.CLINICIAN)}"}
    officer = {"Authorization": f"Bearer {nation.token(Role.COMPLIANCE_OFFICER)}"}
    for url, path, token in ((nation.query, "/v1/overview", bearer),
                             (nation.audit, "/audit/search", officer),
                             (nation.consent, "/v1/blocks", bearer),
                             (nation.index, "/engagement-updates", {}),
                             (nation.simulator, "/producers/SE2321000016-LA/notes", {})):
        status, _, body = await _answer_to_headers(url, path, ten_mb)
        assert (status, json.loads(body)["code"]) == (401, "token.missing"), (url, path)
        if token:
            status, _, body = await _answer_to_headers(url, path, ten_mb | token)
            assert (status, json.loads(body)["code"]) == (413, "request.too_large"), (url, path)
    # The protocols' own front ends refuse alike, in their own form: FHIR an OperationOutcome...
    for url, path, reader in ((nation.audit, "/fhir/r4/AuditEvent/_search", officer),
                              (nation.query, "/fhir/r4/Observation/_search", bearer),
                              (nation.query, "/fhir/r4/Patient/$summary", bearer)):
        for headers, expected in (({}, (401, "token.missing")), (reader, (413, "request.too_large"))):
            status, _, body = await _answer_to_headers(url, path, ten_mb | headers)
            outcome = json.loads(body)
            assert outcome["resourceType"] == "OperationOutcome", path
            assert (status, outcome["issue"][0]["details"]["coding"][0]["code"]) == expected, path
    # ... RIV-TA a SOAP fault (the index's Update, the query's read contracts, a simulated
    # producer's responder), with HTTP's own 413 where the body is too large.
    producer = nation.headers(nation.producer(next(iter(nation.source.nation.producers))))
    read = CARE_DOCUMENTATION.interaction.path
    for url, path, cases in (
        (nation.index, UPDATE.path, (({}, 500, "token.missing"), (producer, 413, "request.too_large"))),
        (nation.query, read, (({}, 500, "token.missing"), (bearer, 413, "request.too_large"))),
        (nation.simulator, read, (({}, 500, "token.missing"),)),
    ):
        for sent, expected, code in cases:
            status, _, body = await _answer_to_headers(url, path, ten_mb | sent)
            fault = read_fault(read_envelope(parse(body)))
            assert (status, fault and fault.code) == (expected, code), (url, path)
    # A chunked body is counted as it arrives: refused past the limit, in the path's protocol.
    chunked = {"Transfer-Encoding": "chunked"} | bearer
    for path, chunk in (("/v1/overview", b"x" * (64 * 1024)), (read, b"x" * (600 * 1024))):
        status, _, body = await _answer_to_headers(nation.query, path, chunked,
                                                   (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2)
        code = json.loads(body)["code"] if path == "/v1/overview" else _fault_code(body)
        assert (status, code) == (413, "request.too_large"), path


def _fault_code(body: bytes) -> str | None:
    fault = read_fault(read_envelope(parse(body)))
    return fault and fault.code


# Finding 8 (low): NUL characters gave 500.

async def test_nul_characters_are_refused_as_invalid(nation: Nation, patient: str) -> None:
    holder = holder_of(nation, patient)
    cursor = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|a\x00b").decode()
    async with httpx.AsyncClient(timeout=30) as http:
        for path, body, who in (
                ("blocks", {"patient_id": patient, "care_giver": holder.care_giver, "reason": "a\x00"},
                 holder),
                ("emergency-accesses", {"patient_id": patient, "reason": "unconscious\x00"},
                 Role.CLINICIAN),
                ("protected-identities", {"patient_id": patient, "reason": "\x00"}, Role.CLINICIAN)):
            refused(await command(http, nation, path, body, who), "request.invalid", 422)
        for route in ("search", "export"):
            answer = await http.post(f"{nation.audit}/audit/{route}", json={"cursor": cursor},
                                     headers=nation.headers(Role.COMPLIANCE_OFFICER))
            refused(answer, "cursor.invalid", 422)


# Finding 9 (low): exports answered 200 and were then cut off.

async def test_an_export_is_whole_or_a_problem(nation: Nation) -> None:
    officer = nation.headers(Role.COMPLIANCE_OFFICER)
    async with httpx.AsyncClient(timeout=30) as http:
        bad_cursor = await http.post(f"{nation.audit}/audit/export", json={"cursor": "bm90LWEtY3Vyc29y"},
                                     headers=officer)
        refused(bad_cursor, "cursor.invalid", 422)
        consent_as_fhir = await http.post(f"{nation.audit}/audit/export?format=fhir",
                                          json={"kind": "consent"}, headers=officer)
        assert consent_as_fhir.status_code in (200, 422), consent_as_fhir.text
        if consent_as_fhir.status_code == 200:  # once consent records have a FHIR form: whole
            assert json.loads(consent_as_fhir.text)["resourceType"] == "Bundle"
        else:
            assert consent_as_fhir.json()["code"] == "export.kind_not_in_fhir"


# Finding 11 (low): no rate limits.

async def test_one_user_is_rate_limited_with_retry_after(nation: Nation, patient: str) -> None:
    flooder = OTHER.model_copy(update={"sub": "SE2321000099-L002"})
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*(overview(http, nation, patient, flooder) for _ in range(40)))
        limited = [a for a in answers if a.status_code == 429]
        assert limited, [a.status_code for a in answers]
        assert limited[0].json()["code"] == "rate.limited"
        assert int(limited[0].headers["Retry-After"]) >= 1
        # ... one user only: another clinician's overview is answered meanwhile
        assert (await overview(http, nation, patient, OTHER)).status_code != 429


async def test_a_rivta_reader_is_rate_limited_with_a_fault_and_retry_after(
    nation: Nation, patient: str
) -> None:
    flooder = OTHER.model_copy(update={"sub": "SE2321000099-L003"})
    soap = envelope(request(CARE_DOCUMENTATION, patient),
                    [logical_address_header(QuerySettings().riv_logical_address)])
    headers = nation.headers(flooder) | {"Content-Type": CONTENT_TYPE}
    url = f"{nation.query}{CARE_DOCUMENTATION.interaction.path}"
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*(http.post(url, content=soap, headers=headers)
                                         for _ in range(40)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert _fault_code(limited[0].content) == "rate.limited"  # a fault: the path speaks SOAP
    assert int(limited[0].headers["Retry-After"]) >= 1


async def test_a_fhir_reader_is_rate_limited_with_an_operation_outcome(nation: Nation) -> None:
    """Limited before the body is read: the admitted ones are cheap refusals of a bad form."""
    flooder = OTHER.model_copy(update={"sub": "SE2321000099-L004"})
    headers = nation.headers(flooder) | {"Content-Type": "application/x-www-form-urlencoded"}
    url = f"{nation.query}/fhir/r4/Patient/$summary"
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*(http.post(url, content=b"identifier=x", headers=headers)
                                         for _ in range(40)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    issue = limited[0].json()["issue"][0]
    assert (issue["code"], issue["details"]["coding"][0]["code"]) == ("throttled", "rate.limited")
    assert int(limited[0].headers["Retry-After"]) >= 1


# Finding 10 (low): identity numbers in the HTTP server's access log. A service process as
# `npo up` runs it (here the simulated producers: no database or broker needed).

def test_the_access_log_masks_identity_numbers_in_urls(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SIMULATOR_HTTP_PORT": str(port), "SIMULATOR_POPULATION": "200",
           "NPO_STATE_DIR": str(tmp_path), "NPO_LOG_LEVEL": "INFO"}
    server = subprocess.Popen([sys.executable, "-c", "from npo_simulator.main import run; run()"],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        # A client that puts the number in the URL anyway (path and query string).
        httpx.get(f"{url}/producers/191212121212?patient=19121212-1212", timeout=5)
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    lines = [line for line in log.splitlines() if "/producers/" in line]
    assert lines, log[-2000:]  # the access log wrote the request
    assert "191212121212" not in log
    assert "19121212-1212" not in log
    assert all("[pnr-redacted]" in line for line in lines)


# Findings 4 and 7 over RIV-TA: a region answering a national read contract gets a token bound to
# its responder URL, which nothing else accepts, and answers nothing else.

async def test_rivta_producers_answer_only_the_token_bound_to_their_responder(
    nation: Nation, producer_tokens: ProducerTokens
) -> None:
    patient, region = next(
        (p.patient_id, org) for p in nation.source.people if p.patient_id != nation.patient
        for org, records in nation.producers_of(p.patient_id).items()
        if org.kind is Kind.REGION and NOTES in {r.category for r in records})
    path = CARE_DOCUMENTATION.interaction.path
    responder = f"{nation.simulator}{path}"
    soap = envelope(request(CARE_DOCUMENTATION, patient), [logical_address_header(region.logical_address)])

    async def asked(headers: dict[str, str]) -> tuple[int, str | None]:
        answer = await http.post(responder, content=soap, headers=headers | {"Content-Type": CONTENT_TYPE})
        fault = read_fault(read_envelope(parse(answer.content)))
        return answer.status_code, fault and fault.code

    async with httpx.AsyncClient(timeout=30) as http:
        routed = await http.put(f"{nation.query}/v1/routing/routes", headers=nation.headers(Role.ADMIN),
                                json=[{"logical_address": region.logical_address, "category": "notes",
                                       "protocol": "rivta", "endpoint": responder}])
        assert routed.status_code == 204, routed.text
        for who in (Role.ADMIN, Role.CLINICIAN, nation.aggregator):
            assert await asked(nation.headers(who)) == (500, "token.audience")
        await registered(http, nation, "relations", {"patient_id": patient})
        await registered(http, nation, "consents", {"patient_id": patient, "care_unit": DEMO_UNIT,
                                                    "valid_to": later()})
        producer_tokens.seen.clear()
        assert (await overview(http, nation, patient)).status_code == 200  # the query calls it
        sent = producer_tokens.seen[path]
        assert await asked({"Authorization": sent}) == (200, None)
        replayed = {
            f"{nation.simulator}/producers/{region.logical_address}/notes": {"patientId": patient},
            f"{nation.index}/find-content": {"registeredResidentIdentification": patient,
                                             "serviceDomain": by_number(NOTES).service_domain},
        }
        for target, payload in replayed.items():
            answer = await http.post(target, json=payload, headers={"Authorization": sent})
            assert (answer.status_code, answer.json()["code"]) == (401, "token.audience"), target
