"""The load of ``npo bench riv``: Update messages for the index; producers with contract-shaped
records and the readers asking the query service over JSON and RIV-TA (processes of their own).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import uvloop

from npo_bench import query_load
from npo_platform.categories import find_by_code
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import Principal, Role
from npo_rivta import engagementindex as ei
from npo_rivta.contracts import UPDATE
from npo_rivta.headers import ORIGINAL_CONSUMER, logical_address_header
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_rivta.records import PERSONNUMMER_OID, documents, request
from npo_rivta.soap import CONTENT_TYPE, envelope, read_envelope
from npo_rivta.xml import parse

PRODUCER = "SE2321000016-B001"  # the source system sending Updates
ADDRESS = "SE2321000016-B001-LA"
CONTROLLER = "SE2321000016-G001"  # the care giver the producer's token names (EI008)
OWN = "SE5565594230-NPOIDX"  # the index's riv_logical_address (its default)
AGGREGATOR = "5565594230"  # the query's riv_logical_address (its default)
LATENCY_MS, PRODUCERS, PATIENTS, READERS = 20.0, 300, 2_000, 32
READER = Principal(sub="SE2321000016-A1B2", name="Bench", roles=frozenset({Role.CLINICIAN}),
                   care_unit="SE2321000016-U001", care_giver="SE2321000016-G001",
                   assignment="A1", purpose="care")
# The source system's token: the index takes the data controller only from it (EI008).
SENDER = Principal(sub=PRODUCER, name="bench", roles=frozenset({Role.PRODUCER}),
                   care_giver=CONTROLLER, logical_addresses=frozenset({ADDRESS}))
_DOMAIN = "riv:clinicalprocess:healthcond:description"
_CATEGORIZATIONS = ("dia", "upp", "voo", "fun-fun", "pad-pad")


# --- Update messages ------------------------------------------------------------------------

def update_message(n: int, engagements: int = 1000, per_patient: int = 10) -> bytes:
    """The ``n``th Update: ``engagements`` transactions, ``per_patient`` keys for each of its
    patients (none shared with another message)."""
    transactions = []
    for i in range(engagements):
        patient = make_personnummer(date(1940, 1, 1) + timedelta(days=(n * 997 + i // per_patient)
                                                                    % 25_000), i // per_patient % 1000)
        transactions.append(EngagementTransaction(engagement=Engagement(
            registered_resident_identification=patient, service_domain=_DOMAIN,
            categorization=_CATEGORIZATIONS[i % len(_CATEGORIZATIONS)], logical_address=ADDRESS,
            business_object_instance_identifier=f"B{n}-{i}", clinical_process_interest_id="NA",
            most_recent_content="20260101120000", source_system=PRODUCER,
            data_controller=CONTROLLER)))
    return envelope(ei.transactions_request(UPDATE, transactions), [logical_address_header(OWN)])


# --- producers with contract-shaped records ---------------------------------------------------

_TEXT = "Patienten söker för andfåddhet sedan en vecka. Status: opåverkad, AF ua. " * 4
_BODIES: dict[str, dict[str, Any]] = {
    "notes": {"clinicalDocumentNote": {"clinicalDocumentNoteTitle": "Epikris",
                                       "clinicalDocumentNoteText": _TEXT}},
    "diagnoses": {"typeOfDiagnosis": "Huvuddiagnos", "diagnosisCode": {
        "code": "I50.9", "codeSystem": "1.2.752.116.1.1.1.1.3", "displayName": "Hjärtsvikt"}},
    "alerts": {"typeOfAlertInformation": {"code": "upp", "displayName": "Överkänslighet"},
               "validityTimePeriod": {"start": "20250101120000"}, "alertInformationComment": _TEXT},
    "functional_status": {"assessmentCategory": "fun-fun", "comment": _TEXT},
    "laboratory": {"resultattyp": {"code": "DEF"}, "laboratorieid": {"root": "1", "extension": "U"},
                   "svarsrapportid": {"root": "1", "extension": "R"}, "svarstidpunkt": "20250101120000",
                   "resultatrapport": _TEXT, "ansvarigtLabb": {"orgUnit": {"name": "Labb"}},
                   "svarsmottagare": {"orgUnit": {"name": "VC"}}},
    "imaging": {"typeOfResult": "DEF", "resultTime": "20250101120000", "resultReport": _TEXT},
    "consultations": {"referralOutcomeTypeCode": "SR", "referralOutcomeText": _TEXT,
                      "referral": {"referralId": "R1", "referralReason": "Bedömning"}},
    "medications": {"medicationPrescription": {"prescriptionStatus": "Active", "dosage": {
        "dosageInstruction": "1 tablett 2 gånger dagligen"}}},
    "vaccinations": {"registrationRecord": {"careGiverOrg": {"orgUnitHSAId": "G"}},
                     "administrationRecord": {"vaccineName": "Influensa"}},
    "care_contacts": {"careContactReason": _TEXT},
    "care_plans": {"typeOfCarePlanEnum": "VP"},
}


def serve_producers(port: int, latency_ms: float) -> None:
    """Process entry: producers answering two contract-shaped records per call after L."""
    uvloop.run(query_load._serve(port, partial(_Producer, latency_ms / 1000)))


class _Producer(query_load.ProducerProtocol):
    """``npo bench query``'s lean producers, answering records whose bodies are the category's
    contract body (so the RIV-TA answer carries what a real one does)."""

    def records(self, producer: str, patient: str, category: str) -> list[dict[str, Any]]:
        found = super().records(producer, patient, category)
        for record in found:
            record["header"]["patientId"]["type"] = PERSONNUMMER_OID
            record["body"] = _BODIES.get(category, {"description": "x"})
        return found


# --- readers ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadPlan:
    url: str
    token: str
    rate: float  # per protocol, queries/s (open loop)
    warm_up_s: float
    seconds: float


def pairs() -> list[tuple[str, str]]:
    """The (patient, category) pairs the stand-in index holds, each category with a contract."""
    index = query_load.StandInIndex(query_load.patients_of(PATIENTS), PRODUCERS)
    found = set()
    for (patient, _), entries in index.entries.items():
        for entry in entries:
            category = find_by_code(entry.service_domain, entry.categorization)
            if category is not None and category.key in READ_CONTRACTS:
                found.add((patient, category.key))
    return sorted(found)


def read(plan: ReadPlan, out: Connection) -> None:
    """Process entry: compare, warm up, measure; sends whether both protocols answered the same
    records, then ``{"json": [ms…], "riv": [ms…]}``."""
    uvloop.run(_read(plan, out))
    out.close()


class _Reader(query_load.ReaderConnection):
    """A reader's connection, its request line and headers set per protocol."""

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__(host, port, token)
        base = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        self.heads = {"json": self.head}
        for category, contract in READ_CONTRACTS.items():
            self.heads[category] = (
                f"POST {contract.interaction.path} HTTP/1.1\r\n{base}Content-Type: {CONTENT_TYPE}\r\n"
                f'SOAPAction: "{contract.interaction.soap_action}"\r\n'
                f"{ORIGINAL_CONSUMER}: SE2321000016-JOURNAL\r\n").encode()

    async def ask(self, kind: str, patient: str, category: str) -> bytes:
        if kind == "json":
            self.head, body = self.heads["json"], json.dumps(
                {"patientId": patient, "categories": [category]}).encode()
        else:
            self.head = self.heads[category]
            body = envelope(request(READ_CONTRACTS[category], patient),
                            [logical_address_header(AGGREGATOR)])
        status, content = await self.post(body)
        if status != 200:
            raise RuntimeError(f"{kind} read answered {status}: {content[:300]!r}")
        return content


async def _read(plan: ReadPlan, out: Connection) -> None:
    asked = pairs()
    url = urlsplit(plan.url)
    assert url.hostname is not None
    assert url.port is not None
    readers = [_Reader(url.hostname, url.port, plan.token) for _ in range(READERS)]
    try:
        same = await _same(readers[0], asked[:40])
        gc.collect()
        gc.freeze()  # the readers' own collector pauses would count as the service's latency
        await _phase(readers, asked, plan.rate, plan.warm_up_s, {"json": [], "riv": []})
        out.send(same)
        samples: dict[str, list[float]] = {"json": [], "riv": []}
        await _phase(readers, asked, plan.rate, plan.seconds, samples)
        out.send(samples)
    finally:
        for reader in readers:
            reader.close()


async def _same(reader: _Reader, asked: list[tuple[str, str]]) -> bool:
    """Whether both protocols answer the same records, in the same order, for ``asked``."""
    for patient, category in asked:
        by_json = json.loads(await reader.ask("json", patient, category))
        riv = read_envelope(parse(await reader.ask("riv", patient, category))).body
        if [r["document"] for r in by_json["records"]] != documents(
                READ_CONTRACTS[category], riv, patient):
            return False
    return True


async def _phase(readers: list[_Reader], asked: list[tuple[str, str]], rate: float,
                 seconds: float, into: dict[str, list[float]]) -> None:
    """Open loop at ``rate`` per protocol: read i is due at start + i/(2·rate), pair i // 2,
    JSON when i is even, RIV-TA when odd; its latency counts from when it was due."""
    start = time.perf_counter()
    due = iter(range(round(2 * rate * seconds)))

    async def reader(connection: _Reader) -> None:
        while (i := next(due, None)) is not None:
            began = start + i / (2 * rate)
            await asyncio.sleep(max(0.0, began - time.perf_counter()))
            patient, category = asked[(i // 2) % len(asked)]
            kind = "json" if i % 2 == 0 else "riv"
            await connection.ask(kind, patient, category)
            into[kind].append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(reader(r) for r in readers))

