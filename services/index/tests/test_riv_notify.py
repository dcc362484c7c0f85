"""Notifications out on the real stack: a registered SOAP subscriber receives exactly the real
changes its filter accepts, batched (at most 1000 a call), never its own; a subscriber that
refuses or cannot be reached gets its records dead-lettered with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request, Response
from index_helpers import Tokens, engagement, patient, tx, wait_for
from riv_helpers import OWN, RivIndex, answer_of, message, post, riv_index

from npo_deploy.processes import free_port
from npo_index.riv_notify import Subscriber
from npo_platform.contracts.events_pb2 import EngagementTransaction
from npo_platform.kafka import DLQ_GROUP, DLQ_REASON
from npo_platform.settings import kafka_client_options
from npo_platform.topics import dead_letter_topic
from npo_rivta import engagementindex as ei
from npo_rivta.contracts import PROCESS_NOTIFICATION, UPDATE
from npo_rivta.headers import logical_address
from npo_rivta.soap import CONTENT_TYPE, envelope, fault, read_envelope
from npo_rivta.xml import parse

pytestmark = pytest.mark.integration
DOMAIN = "riv:clinicalprocess:healthcond:description"
CACHE = "SE2321000016-AGPCACHE"


@dataclass
class Received:
    calls: list[list[EngagementTransaction]] = field(default_factory=list)
    addressed_to: set[str] = field(default_factory=set)

    @property
    def transactions(self) -> list[EngagementTransaction]:
        return [t for call in self.calls for t in call]


@asynccontextmanager
async def _subscriber(refuse: bool = False) -> AsyncIterator[tuple[str, Received]]:
    """A ProcessNotification responder on a real port, recording every call."""
    received = Received()
    app = FastAPI()

    @app.post("/notify")
    async def notify(request: Request) -> Response:
        env = read_envelope(parse(await request.body()))
        received.addressed_to.add(logical_address(env) or "")
        if refuse:
            return Response(fault("EI004", "not for us"), 500, media_type=CONTENT_TYPE)
        received.calls.append(ei.transactions(env.body, PROCESS_NOTIFICATION))
        return Response(envelope(ei.result_response(PROCESS_NOTIFICATION)), media_type=CONTENT_TYPE)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/notify", received
    finally:
        server.should_exit = True
        await serving


def _key(t: EngagementTransaction) -> tuple[str, str, str, bool]:
    e = t.engagement
    return (e.registered_resident_identification, e.categorization,
            e.business_object_instance_identifier, t.delete_flag)


async def test_a_subscriber_receives_exactly_the_real_changes_it_asked_for_batched(
    database_url: str, kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    async with _subscriber() as (url, received):
        cache = Subscriber(logical_address=CACHE, endpoint=url,
                           filters=({"serviceDomain": DOMAIN},))  # type: ignore[arg-type]
        async with riv_index(database_url, kafka_bootstrap_servers, Tokens(tmp_path / "k"),
                             riv_subscribers=(cache,)) as index:
            expected = await _make_changes(index)
            await wait_for(lambda: len(received.transactions) >= len(expected), 60)
            await asyncio.sleep(1.0)  # a surplus (a no-op, a change sent back) would show now
    assert sorted(map(_key, received.transactions)) == sorted(expected)
    assert max(len(call) for call in received.calls) <= 1000
    assert len(received.calls) < len(expected) / 10  # batched, not one call per change
    assert received.addressed_to == {CACHE}
    assert {t.engagement.owner for t in received.transactions} == {OWN}


async def _make_changes(index: RivIndex) -> list[tuple[str, str, str, bool]]:
    """Real changes (1500 created, 10 with new content, 5 deleted) among no-ops (the same
    update again), changes of another domain and changes that came from the subscriber."""
    created = [tx(engagement(patient(700 + n // 15), categorization=f"c{n % 15}", boi=f"d{n}"))
               for n in range(1500)]
    for start in range(0, 1500, 500):
        chunk = created[start:start + 500]
        for _ in range(2):  # the second time changes nothing
            answer_of(await post(index.client, UPDATE, message(UPDATE, chunk), index.producer()))
    newer = [tx(engagement(patient(700), categorization=f"c{n}", boi=f"d{n}",
                           content="20260301120000")) for n in range(10)]
    deleted = [tx(engagement(patient(701), categorization=f"c{n}", boi=f"d{15 + n}"), delete=True)
               for n in range(5)]
    elsewhere = [tx(engagement(patient(702), service_domain="riv:clinicalprocess:logistics:logistics",
                               categorization="vko"))]
    answer_of(await post(index.client, UPDATE, message(UPDATE, [*newer, *deleted, *elsewhere]),
                         index.producer()))
    theirs = engagement(patient(703))
    theirs.owner = CACHE
    answer_of(await post(index.client, PROCESS_NOTIFICATION,
                         message(PROCESS_NOTIFICATION, [tx(theirs)]), index.system()))
    return [_key(t) for t in [*created, *newer, *deleted]]


async def _dead_letters(bootstrap: str, topic: str, expected: int) -> list[dict[str, bytes]]:
    consumer = AIOKafkaConsumer(dead_letter_topic(topic), **kafka_client_options(bootstrap),
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict[str, bytes]] = []
    try:
        async with asyncio.timeout(90):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += [dict(r.headers) for r in records]
    finally:
        await consumer.stop()
    return found


@pytest.mark.parametrize(("refuse", "reason"), [(True, b"notify.refused"),
                                                (False, b"handler.failed")])
async def test_a_subscriber_that_refuses_or_is_unreachable_gets_dead_letters_with_the_reason(
    database_url: str, kafka_bootstrap_servers: str, tmp_path: Path, refuse: bool, reason: bytes
) -> None:
    async with _subscriber(refuse=True) as (url, _):
        endpoint = url if refuse else f"http://127.0.0.1:{free_port()}/nobody"
        subscriber = Subscriber(logical_address=CACHE, endpoint=endpoint)
        async with riv_index(database_url, kafka_bootstrap_servers, Tokens(tmp_path / "k"),
                             riv_subscribers=(subscriber,), riv_notify_attempts=2) as index:
            answer_of(await post(index.client, UPDATE,
                                 message(UPDATE, [tx(engagement(patient(750)))]), index.producer()))
            [letter] = await _dead_letters(kafka_bootstrap_servers, index.settings.changes_topic, 1)
    assert letter[DLQ_REASON] == reason
    assert letter[DLQ_GROUP].decode().endswith(f"-notify-{CACHE}")
