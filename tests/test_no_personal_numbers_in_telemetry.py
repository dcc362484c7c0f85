"""No personnummer in logs or traces, across the real index, consent, query, simulator and audit apps.

The apps run under uvicorn against the real broker and database with the platform's telemetry
(``configure_logging`` at DEBUG, which holds the Kafka client's wire dumps at INFO, and
``configure_tracing`` with an in-memory exporter). While a
clinician registers a relation and a consent, reads an overview, is refused one for a patient
without consent, the audit service ingests the access events, and a compliance officer searches
them (JSON, and FHIR by form body with a paging link) and reads who read the log (the reads are
recorded with their filters, patient numbers included), the test keeps:

- every log record's *raw* message and exception text, captured before the platform's
  redaction runs: code must never log the number at all (the redaction is defence in depth);
- every *written* JSON log line (after redaction), which is what an operator would see;
- every span's name, attributes (``http.url``, ``http.target``, ...) and events.

It asserts that neither patient's 12-digit id nor its 10-digit form (with or without the
separator) appears in any of them.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from npo_audit.config import AuditSettings
from npo_audit.main import create_app as audit_app
from npo_consent.config import ConsentSettings
from npo_consent.main import ConsentTopics
from npo_consent.main import create_app as consent_app
from npo_deploy.processes import free_port
from npo_deploy.testing import TopicFactory, serve
from npo_index.config import IndexSettings
from npo_index.main import create_app as index_app
from npo_platform.categories import by_number
from npo_platform.identity import (
    PRIVATE_KEY_FILE,
    Principal,
    Role,
    TokenVerifier,
    ensure_local_keypair,
    issue_token,
)
from npo_platform.telemetry import configure_logging, configure_tracing
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS
from npo_query.config import QuerySettings
from npo_query.main import Parts
from npo_query.main import create_app as query_app
from npo_simulator.config import SimulatorSettings
from npo_simulator.organisations import Organisation
from npo_simulator.server import create_app as simulator_app
from npo_simulator.store import RecordSource

pytestmark = pytest.mark.integration
SOURCE = RecordSource(2_000, seed=11)
UNIT, GIVER = "SE2321000016-U001", "SE2321000016-G001"


class RawRecords(logging.Handler):
    """Keeps each record's message and exception text as the code wrote them (before redaction)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@dataclass
class Telemetry:
    raw: RawRecords
    written: io.StringIO
    spans: InMemorySpanExporter
    provider: TracerProvider


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("npo-telemetry-test", "DEBUG")
    # The platform holds aiokafka at INFO: its DEBUG records dump record keys (patient ids).
    kafka_logger = logging.getLogger("aiokafka")
    saved_kafka_level = kafka_logger.level
    assert kafka_logger.level == logging.INFO
    written = io.StringIO()
    [platform_handler] = root.handlers
    assert isinstance(platform_handler, logging.StreamHandler)
    platform_handler.setStream(written)
    raw = RawRecords()
    root.handlers.insert(0, raw)  # first: the platform handler's filter rewrites record.msg
    spans = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):  # an earlier test installed one: OTel allows only one
        provider.add_span_processor(SimpleSpanProcessor(spans))
    else:
        provider = configure_tracing("npo-telemetry-test", exporter=spans)
    try:
        yield Telemetry(raw, written, spans, provider)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        kafka_logger.setLevel(saved_kafka_level)
        spans.shutdown()


@dataclass
class Stack:
    index: str
    consent: str
    query: str
    audit: str


def _token(private: bytes, principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(private, principal, timedelta(minutes=10))}"}


def _clinician(private: bytes) -> dict[str, str]:
    return _token(private, Principal(sub="SE2321000016-A1B2", name="Anna", roles=frozenset(
        {Role.CLINICIAN}), care_unit=UNIT, care_giver=GIVER, assignment="A1", purpose="care"))


def _officer(private: bytes) -> dict[str, str]:
    return _token(private, Principal(sub="SE2321000016-CO01", name="Officer",
                                     roles=frozenset({Role.COMPLIANCE_OFFICER})))


def _producer(private: bytes, org: Organisation) -> dict[str, str]:
    return _token(private, Principal(sub=org.source_system, name=org.name,
                                     roles=frozenset({Role.PRODUCER}), care_giver=org.care_giver,
                                     logical_addresses=frozenset({org.logical_address})))


@pytest.fixture
async def stack(telemetry: Telemetry, tmp_path: Path, kafka_bootstrap_servers: str,
                database_url: str, kafka_topic_factory: TopicFactory) -> AsyncIterator[Stack]:
    _, public = ensure_local_keypair(tmp_path / "keys")
    run = uuid.uuid4().hex[:8]
    common: dict[str, Any] = {"kafka_bootstrap_servers": kafka_bootstrap_servers,
                              "database_url": database_url, "state_dir": tmp_path,
                              "jwt_public_key_path": public, "log_level": "DEBUG"}
    access, consent_events = kafka_topic_factory(3), kafka_topic_factory(3)
    verifier = TokenVerifier(public.read_bytes())
    quiet = {"log_config": None}  # uvicorn's loggers (access log included) reach the root handlers
    async with AsyncExitStack() as exits:
        port = free_port()  # the producers answer only tokens bound to their own endpoints
        sim = simulator_app(SimulatorSettings(population=2_000, seed=11,
                                              public_url=f"http://127.0.0.1:{port}"),
                            SOURCE, token_verifier=verifier)
        sim_url = await exits.enter_async_context(serve(sim, port=port, **quiet))
        index = IndexSettings(**common, db_schema=f"tl_idx_{run}", consumer_group=f"tl-idx-{run}",
                              updates_topic=kafka_topic_factory(), changes_topic=kafka_topic_factory())
        index_url = await exits.enter_async_context(serve(index_app(index), **quiet))
        topics = ConsentTopics(replace(ACCESS_EVENTS, name=access),
                               replace(CONSENT_EVENTS, name=consent_events))
        consent = ConsentSettings(**common, db_schema=f"tl_consent_{run}", consumer_group=f"tl-c-{run}")
        consent_url = await exits.enter_async_context(serve(consent_app(consent, topics=topics), **quiet))
        audit = AuditSettings(**common, db_schema=f"tl_audit_{run}", consumer_group=f"tl-a-{run}",
                              access_topic=access, consent_topic=consent_events)
        audit_url = await exits.enter_async_context(serve(audit_app(audit, token_verifier=verifier),
                                                          **quiet))
        routing = tmp_path / "routing.json"
        routing.write_text(_routing(sim_url))
        query = QuerySettings(**common, db_schema=f"tl_query_{run}", index_url=index_url,
                              consent_url=consent_url, routing_file=routing, access_topic=access,
                              consent_topic=consent_events, changes_topic=index.changes_topic,
                              producer_timeout_s=2.0, allow_loopback_routes=True)
        app = query_app(query, parts=Parts(offset_reset="earliest"))
        query_url = await exits.enter_async_context(serve(app, **quiet))
        yield Stack(index_url, consent_url, query_url, audit_url)


def _routing(sim_url: str) -> str:
    addresses = sorted({o.logical_address for o in SOURCE.nation.organisations})
    return json.dumps({
        "routes": [{"logical_address": a, "endpoint": f"{sim_url}/producers/{a}"} for a in addresses],
        "authorisations": [{"consumer_system": QuerySettings().consumer_system,
                            "logical_address": a, "categories": "*"} for a in addresses],
    })


def _patients() -> tuple[tuple[str, dict[Organisation, list[Any]]], str]:
    """One patient with records at a producer, and another one."""
    found: list[tuple[str, dict[Organisation, list[Any]]]] = []
    for person in SOURCE.population:
        by_org: dict[Organisation, list[Any]] = {}
        for record in SOURCE.histories.of(person):
            if not record.social_services:
                by_org.setdefault(record.producer, []).append(record)
        if by_org:
            found.append((person.patient_id, by_org))
        if len(found) == 2:
            return found[0], found[1][0]
    raise AssertionError("too few patients with data")


def _transaction(record: Any) -> dict[str, Any]:
    category, org = by_number(record.category), record.producer
    return {"engagement": {
        "registeredResidentIdentification": record.patient_id,
        "serviceDomain": category.service_domain, "categorization": category.categorizations[0],
        "logicalAddress": org.logical_address, "businessObjectInstanceIdentifier": record.record_id,
        "sourceSystem": org.source_system, "dataController": org.care_giver,
        "mostRecentContent": record.time.strftime("%Y%m%d%H%M%S")}}


async def _scenario(http: httpx.AsyncClient, stack: Stack, private: bytes) -> None:
    (patient, by_org), stranger = _patients()
    for org, records in by_org.items():
        sent = await http.post(f"{stack.index}/engagement-updates", headers=_producer(private, org),
                               json={"transactions": [_transaction(r) for r in records]})
        assert sent.status_code == 202, sent.text
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for path, body in (("relations", {"patient_id": patient}),
                       ("consents", {"patient_id": patient, "care_unit": UNIT, "valid_to": later})):
        answer = await http.post(f"{stack.consent}/v1/{path}", json=body, headers=_clinician(private))
        assert answer.status_code == 201, answer.text
    await _until_indexed(http, stack, private, patient)
    read = await http.post(f"{stack.query}/v1/overview", json={"patientId": patient},
                           headers=_clinician(private))
    assert read.status_code == 200, read.text
    assert read.json()["records"]
    other = await http.post(f"{stack.query}/v1/overview", json={"patientId": stranger},
                            headers=_clinician(private))  # no relation: refused, audited too
    assert other.status_code == 403, other.text
    for path, form, status in (("Observation/_search", {"patient": patient}, 200),  # FHIR: form bodies
                               ("Patient/$summary", {"identifier": patient}, 200),
                               ("Condition/_search", {"patient": stranger}, 403)):
        fhir = await http.post(f"{stack.query}/fhir/r4/{path}", data=form, headers=_clinician(private))
        assert fhir.status_code == status, fhir.text
    async with asyncio.timeout(30):
        while len(await _audited(http, stack, private, patient, stranger)) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    await _fhir_search(http, stack, private, patient)
    await _log_reads(http, stack, private, patient)


async def _log_reads(http: httpx.AsyncClient, stack: Stack, private: bytes, patient: str) -> None:
    """The officer's reads above were recorded with their filters (the patient's number, in the
    audit's database only), and the list of them is itself read."""
    answer = await http.post(f"{stack.audit}/audit/log-reads/search", headers=_officer(private),
                             json={"user_hsa_id": "SE2321000016-CO01"})
    assert answer.status_code == 200, answer.text
    filters = [json.dumps(item["filter"]) for item in answer.json()["items"]]
    assert any(patient in text for text in filters), filters


async def _fhir_search(http: httpx.AsyncClient, stack: Stack, private: bytes, patient: str) -> None:
    """The officer's FHIR AuditEvent search by patient (a form body) and its next page by link."""
    first = await http.post(f"{stack.audit}/fhir/r4/AuditEvent/_search", headers=_officer(private),
                            data={"patient": patient, "_count": "1"})
    assert first.status_code == 200, first.text
    following = next(link["url"] for link in first.json()["link"] if link["relation"] == "next")
    second = await http.get(following, headers=_officer(private))
    assert second.status_code == 200, second.text
    assert second.json()["entry"][0]["resource"]["resourceType"] == "AuditEvent"


async def _until_indexed(http: httpx.AsyncClient, stack: Stack, private: bytes, patient: str) -> None:
    async with asyncio.timeout(30):
        while True:
            answer = await http.post(f"{stack.query}/v1/overview", json={"patientId": patient},
                                     headers=_clinician(private))
            if answer.status_code == 200 and answer.json()["records"]:
                return
            await asyncio.sleep(0.2)


async def _audited(http: httpx.AsyncClient, stack: Stack, private: bytes, *patients: str) -> list[Any]:
    found: list[Any] = []
    for patient in patients:
        answer = await http.post(f"{stack.audit}/audit/search", headers=_officer(private),
                                 json={"patient_id": patient, "limit": 1})
        assert answer.status_code == 200, answer.text
        found += answer.json()["items"]
    return found


def _forms(patient: str) -> set[str]:
    """The 12-digit id, its 10-digit form, both with the separator."""
    return {patient, patient[2:], f"{patient[:8]}-{patient[8:]}", f"{patient[2:8]}-{patient[8:]}"}


def _span_texts(span: ReadableSpan) -> Iterator[str]:
    yield f"span name: {span.name}"
    for key, value in (span.attributes or {}).items():
        yield f"span {span.name} attribute {key}={value}"
    for event in span.events:
        yield f"span {span.name} event {event.name}"
        for key, value in (event.attributes or {}).items():
            yield f"span {span.name} event {event.name} attribute {key}={value}"
    if span.status.description:
        yield f"span {span.name} status {span.status.description}"


def _leaks(texts: list[str], forms: set[str]) -> list[str]:
    return [text[:400] for text in texts if any(form in text for form in forms)]


async def test_no_personnummer_in_any_log_line_or_span(
    stack: Stack, telemetry: Telemetry, tmp_path: Path
) -> None:
    private = (tmp_path / "keys" / PRIVATE_KEY_FILE).read_bytes()
    async with httpx.AsyncClient(timeout=30) as http:
        await _scenario(http, stack, private)
    telemetry.provider.force_flush()
    (patient, _), stranger = _patients()
    forms = _forms(patient) | _forms(stranger)
    spans = [text for span in telemetry.spans.get_finished_spans() for text in _span_texts(span)]
    written = telemetry.written.getvalue().splitlines()
    assert telemetry.raw.lines, "no log record was captured"
    assert any("http.url" in t or "url.full" in t for t in spans), "no HTTP client span captured"
    assert any("http.target" in t or "url.path" in t for t in spans), "no HTTP server span captured"
    assert written, "no JSON log line was written"
    assert all(json.loads(line)["message"] is not None for line in written)
    for where, texts in (("raw log record", telemetry.raw.lines), ("written log line", written),
                         ("span", spans)):
        leaks = _leaks(texts, forms)
        assert not leaks, f"a {where} shows a personnummer:\n" + "\n".join(leaks)
