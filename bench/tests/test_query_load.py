"""The query bench's load (npo_bench.query_load): its server factory builds the real query app
from its plan; its producers, stand-in index and consent answer the service's own clients; its
readers keep connections alive."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from npo_bench import query_load as bench_load
from npo_platform.categories import CATEGORIES
from npo_platform.identity import Principal, Role, generate_keypair, issue_token
from npo_query.clients import HttpConsentClient, HttpIndexClient, pooled_session
from npo_query.domain import Target

MINUTES = timedelta(minutes=5)


def test_the_bench_routes_every_producer_for_its_consumer(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    bench_load.write_routing(path, 3, "http://127.0.0.1:9")
    data = json.loads(path.read_text())
    assert [r["endpoint"] for r in data["routes"]] == [
        f"http://127.0.0.1:9/producers/{bench_load.address(n)}" for n in range(3)]
    assert {a["consumer_system"] for a in data["authorisations"]} == {bench_load.CONSUMER}


@pytest.mark.integration
async def test_the_bench_server_app_answers_an_overview_from_its_plan(
    tmp_path: Path, kafka_bootstrap_servers: str, kafka_topic_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What every bench query server process serves: the real app, stand-in index and consent."""
    private, public = generate_keypair()
    (tmp_path / "public.pem").write_bytes(public)
    bench_load.write_routing(tmp_path / "routing.json", 5, "http://127.0.0.1:9")  # nobody there
    topic = kafka_topic_factory()
    system = issue_token(private, Principal(sub="SE5565594230-NPOAGP", name="q",
                                            roles=frozenset({Role.SYSTEM})), MINUTES)
    plan = bench_load.ServerPlan(5, 20, kafka_bootstrap_servers, str(tmp_path / "routing.json"),
                                 str(tmp_path / "public.pem"), system, topic)
    monkeypatch.setenv(bench_load.ENV, json.dumps(plan.__dict__))
    monkeypatch.setattr(gc, "freeze", lambda: None)
    monkeypatch.setattr("npo_platform.service.configure_process", lambda config: None)
    app = bench_load.bench_app()
    clinician = Principal(sub="SE2321000016-A1B2", name="B", roles=frozenset({Role.CLINICIAN}),
                          care_unit="SE2321000016-U001", care_giver="SE2321000016-G001",
                          assignment="A1", purpose="care")
    patient = bench_load.patients_of(20)[0]
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://q") as client:
        token = issue_token(private, clinician, MINUTES)
        answer = await client.post("/v1/overview", json={"patientId": patient},
                                   headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["producersCalled"] >= 1
    assert {p["cause"] for p in body["producers"]} == {"connection_error"}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the bench runs them on uvloop
def test_the_bench_producers_answer_two_records_of_the_patient_after_the_latency(loop: str) -> None:
    _on(loop, _ask_the_bench_producers())


async def _ask_the_bench_producers() -> None:
    address = bench_load.address(7)
    async with (_lean_server(lambda: bench_load.ProducerProtocol(0.05)) as url,
                httpx.AsyncClient(base_url=url) as client):
        began = time.perf_counter()
        first, second = await asyncio.gather(*(  # one connection each, kept alive
            client.post(f"/producers/{address}/notes", json={"patientId": p, "pageSize": 50})
            for p in ("191212121212", "194102135555")))
        took = time.perf_counter() - began
        again = await client.post(f"/producers/{address}/notes", json={"patientId": "191212121212"})
        bad = await client.post(f"/producers/{address}/notes", content=b"{not json")
    assert took >= 0.05
    assert first.status_code == second.status_code == again.status_code == 200
    answer = first.json()
    assert answer["contract"] == "notes"
    assert answer["continuationToken"] is None
    assert [r["header"]["patientId"]["id"] for r in answer["records"]] == ["191212121212"] * 2
    assert [r["header"]["patientId"]["id"] for r in second.json()["records"]] == ["194102135555"] * 2
    assert answer["records"][0]["header"]["documentId"] == f"{address}-0"
    assert bad.status_code == 400


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_bench_index_answers_the_services_own_client_as_the_stand_in(loop: str) -> None:
    _on(loop, _ask_the_bench_index())


async def _ask_the_bench_index() -> None:
    stand_in = bench_load.StandInIndex(bench_load.patients_of(20), 5)
    patients = sorted({patient for patient, _ in stand_in.entries})[:6]
    domains = sorted({category.service_domain for category in CATEGORIES})
    async with (_lean_server(lambda: bench_load.IndexProtocol(stand_in)) as url,
                pooled_session(4) as http):
        client = HttpIndexClient(http, url, lambda: "t", 2.0, 100)
        found = [await client.find(patient, domains) for patient in patients]
        nobody = await client.find("191212121212", domains)
        bad = await http.post(f"{url}/find-content", data=b"{not json")
    assert found == [await stand_in.find(patient, domains) for patient in patients]
    assert all(found)
    assert sum(len(entries) for entries in found) == sum(
        len(entries) for (patient, _), entries in stand_in.entries.items() if patient in patients)
    assert nobody == []
    assert bad.status == 400


def test_the_bench_consent_allows_through_the_services_own_client() -> None:
    _on("uvloop", _ask_the_bench_consent())


async def _ask_the_bench_consent() -> None:
    targets = [Target(bench_load.address(n), "notes") for n in range(3)]
    async with _lean_server(bench_load.ConsentProtocol) as url, pooled_session(4) as http:
        client = HttpConsentClient(http, url, 2.0)
        decision = await client.decide("reader-token", "191212121212", ["notes"], targets)
        bad = await http.post(f"{url}/v1/decisions", data=b"{not json")
    assert decision.outcome == "allowed"
    assert not decision.denied
    assert all(decision.allows(t).allowed for t in targets)
    assert sorted(decision.verdicts) == sorted(t.id for t in targets)
    assert bad.status == 400


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_bench_readers_post_overviews_on_kept_alive_connections(loop: str) -> None:
    _on(loop, _read_through_a_reader_connection())


async def _read_through_a_reader_connection() -> None:
    requests: list[bytes] = []
    connections, ended = 0, asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await answer(reader, writer)
        except asyncio.IncompleteReadError:
            pass  # the reader closed its connection
        finally:
            writer.close()
            if connections == 2:
                ended.set()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            requests.append(head + await reader.readexactly(length))
            if len(requests) == 1:  # plain, kept alive
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            elif len(requests) == 2:  # chunked, then the server closes the connection
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n"
                             b"connection: close\r\n\r\n3\r\nnot\r\n4\r\n now\r\n0\r\n\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n[42]")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = bench_load.ReaderConnection("127.0.0.1", port, "tok")
    try:
        answers = [await reader.post(b'{"patientId": "%d"}' % n) for n in range(3)]
    finally:
        reader.close()
        server.close()
    await asyncio.wait_for(ended.wait(), 5)
    assert answers == [(200, b"{}"), (503, b"not now"), (200, b"[42]")]
    assert connections == 2  # the third request on a new connection
    assert requests[0].startswith(b"POST /v1/overview HTTP/1.1\r\n")
    assert b"Authorization: Bearer tok\r\n" in requests[0]
    assert requests[2].endswith(b'\r\n\r\n{"patientId": "2"}')


def _on(loop: str, coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on a new event loop of the kind named (the bench runs on uvloop)."""
    (uvloop.run if loop == "uvloop" else asyncio.run)(coroutine)


@contextlib.asynccontextmanager
async def _lean_server(protocol: Callable[[], asyncio.Protocol]) -> AsyncIterator[str]:
    """One of the bench's bare HTTP/1.1 servers on a free loopback port: its base URL."""
    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
