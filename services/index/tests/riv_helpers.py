"""SOAP messages for the index's RIV-TA tests, built with the library the index uses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from index_helpers import ADDRESS, PRODUCER, Tokens, changes_in, schema_name, topic_name
from lxml import etree

from npo_index.config import IndexSettings
from npo_index.main import Worker, create_app, open_worker
from npo_platform.contracts import IndexChange
from npo_platform.contracts.events_pb2 import EngagementTransaction
from npo_platform.identity import Role
from npo_platform.settings import kafka_client_options
from npo_rivta import engagementindex as ei
from npo_rivta.contracts import Interaction
from npo_rivta.headers import logical_address_header
from npo_rivta.soap import ReceivedFault, envelope, read_envelope, read_fault
from npo_rivta.xml import parse

OWN = "SE5565594230-NPOIDX"  # IndexSettings.riv_logical_address's default


def message(interaction: Interaction, transactions: Iterable[EngagementTransaction],
            address: str | None = OWN) -> bytes:
    headers = [] if address is None else [logical_address_header(address)]
    return envelope(ei.transactions_request(interaction, transactions), headers)


def wrapped(body: etree._Element, address: str | None = OWN) -> bytes:
    return envelope(body, [] if address is None else [logical_address_header(address)])


async def post(client: httpx.AsyncClient, interaction: Interaction, data: bytes,
               headers: dict[str, str]) -> httpx.Response:
    return await client.post(interaction.path, content=data, headers={
        **headers, "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"{interaction.soap_action}"'})


def fault_of(response: httpx.Response) -> ReceivedFault | None:
    return read_fault(read_envelope(parse(response.content)))


def answer_of(response: httpx.Response) -> etree._Element:
    assert response.status_code == 200, response.text
    return read_envelope(parse(response.content)).body


@dataclass
class RivIndex:
    """A running index (worker ingesting) and its HTTP app, for the RIV-TA tests."""

    client: httpx.AsyncClient
    settings: IndexSettings
    worker: Worker
    tokens: Tokens

    def producer(self, *addresses: str) -> dict[str, str]:
        return self.tokens.bearer(Role.PRODUCER, sub=PRODUCER,
                                  logical_addresses=frozenset(addresses or (ADDRESS,)))

    def system(self) -> dict[str, str]:
        return self.tokens.bearer(Role.SYSTEM, sub="SE5565594230-NPOAGP")


@asynccontextmanager
async def riv_index(database_url: str, bootstrap: str, tokens: Tokens,
                    **settings_: Any) -> AsyncIterator[RivIndex]:
    settings = IndexSettings(
        database_url=database_url, kafka_bootstrap_servers=bootstrap, db_schema=schema_name(),
        updates_topic=topic_name(), changes_topic=topic_name(),
        consumer_group=f"g-{uuid.uuid4().hex[:8]}", db_pool_size=3, **settings_,
    )
    async with open_worker(settings) as worker:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        app = create_app(settings, store=worker.store, publisher=worker.publisher,
                         updates=worker.updates, token_verifier=tokens.verifier)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://npo-index.test") as c:
                yield RivIndex(c, settings, worker, tokens)
        finally:
            stop.set()
            await task


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap))  # subscribed: its metadata
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"no metadata for {topic}"
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def read_changes(bootstrap: str, topic: str, expected: int,
                       seconds: float = 30) -> list[IndexChange]:
    """The changes on ``topic`` until ``expected`` were read, and any surplus within 0.5 s."""
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    found: list[IndexChange] = []
    try:
        async with asyncio.timeout(seconds):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += changes_in(r.value for r in records if r.value is not None)
        for records in (await consumer.getmany(timeout_ms=500)).values():
            found += changes_in(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return found
