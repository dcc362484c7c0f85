"""RIV-TA Update and ProcessNotification on the real stack: the same rows and change events as
the JSON ingest, Inera's EI codes for bad requests with nothing applied, notifications between
indexes (own owner dropped, a changed owner deletes this index's copy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from index_helpers import ADDRESS, Tokens, engagement, patient, tx, wait_for
from riv_helpers import OWN, RivIndex, answer_of, fault_of, message, post, read_changes, riv_index, topic_size

from npo_index.store import FindQuery
from npo_platform.contracts import IndexChange
from npo_platform.contracts.events_pb2 import EngagementTransaction
from npo_rivta import engagementindex as ei
from npo_rivta.contracts import PROCESS_NOTIFICATION, UPDATE

pytestmark = pytest.mark.integration
DOMAIN = "riv:clinicalprocess:healthcond:description"
OTHER_INDEX = "SE2321000016-OTHERIDX"


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path / "keys")


@pytest.fixture
async def index(database_url: str, kafka_bootstrap_servers: str, tokens: Tokens) -> AsyncIterator[RivIndex]:
    async with riv_index(database_url, kafka_bootstrap_servers, tokens) as running:
        yield running


def _thousand() -> list[EngagementTransaction]:
    """1000 engagements of 100 patients, ten categories' worth each, some with content."""
    return [tx(engagement(patient(200 + n // 10), categorization=f"c{n % 10}",
                          content="" if n % 3 else f"2026010112{n % 60:02d}00", boi=f"doc-{n}"))
            for n in range(1000)]


def _comparable(change: IndexChange) -> tuple[str, ...]:
    fields = MessageToDict(change.engagement, preserving_proto_field_name=True)
    fields.pop("creation_time", None)
    fields.pop("update_time", None)
    return (str(change.change), change.engagement_key, *sorted(f"{k}={v}" for k, v in fields.items()))


async def _rows(index: RivIndex, patients: set[str]) -> list[tuple[str, str, str]]:
    rows = []
    for p in sorted(patients):
        found = await index.worker.store.find(FindQuery(p, (DOMAIN,), limit=1000))
        rows += [(r.key.hex(), r.identity.owner, r.most_recent_content) for r in found]
    return rows


async def test_a_soap_update_of_1000_engagements_is_what_the_json_ingest_makes_of_them(
    database_url: str, kafka_bootstrap_servers: str, tokens: Tokens
) -> None:
    transactions = _thousand()
    patients = {t.engagement.registered_resident_identification for t in transactions}
    async with (riv_index(database_url, kafka_bootstrap_servers, tokens) as soap,
                riv_index(database_url, kafka_bootstrap_servers, tokens) as json):
        answer = answer_of(await post(soap.client, UPDATE, message(UPDATE, transactions),
                                      soap.producer()))
        assert ei.result_code(answer, UPDATE) == "OK"
        body = {"transactions": [{"engagement": MessageToDict(t.engagement), "deleteFlag": False}
                                 for t in transactions]}
        assert (await json.client.post("/engagement-updates", json=body,
                                       headers=json.producer())).status_code == 202
        by_soap = await read_changes(kafka_bootstrap_servers, soap.settings.changes_topic, 1000)
        by_json = await read_changes(kafka_bootstrap_servers, json.settings.changes_topic, 1000)
        assert len(by_soap) == 1000
        assert sorted(map(_comparable, by_soap)) == sorted(map(_comparable, by_json))
        rows = await _rows(soap, patients)
        assert len(rows) == 1000
        assert rows == await _rows(json, patients)


def _bad(code: str) -> tuple[list[EngagementTransaction], str]:
    """A request that breaks exactly the rule of ``code`` (with its LogicalAddress)."""
    p = patient(400)
    good = engagement(p)
    if code == "EI000":
        return [*_thousand(), tx(engagement(patient(401)))], OWN
    if code == "EI001":
        return [tx(engagement("19121212121X"))], OWN  # not the contract's pattern
    if code == "EI002":
        return [tx(good), tx(engagement(p))], OWN
    if code == "EI003":
        return [tx(good)], "SE2321000016-NOTTHEINDEX"
    if code == "EI004":
        return [tx(engagement(p, categorization=" voo"))], OWN
    if code == "EI005":
        return [tx(good), tx(engagement(p, logical_address=OWN, boi="x"))], OWN
    if code == "EI006":
        return [tx(engagement(p, source_system="SE5565594230-NPOAGP"))], OWN
    raise AssertionError(code)


@pytest.mark.parametrize("code", ["EI000", "EI001", "EI002", "EI003", "EI004", "EI005", "EI006"])
async def test_every_ei_code_is_answered_for_its_own_bad_request_and_nothing_is_applied(
    index: RivIndex, kafka_bootstrap_servers: str, code: str
) -> None:
    transactions, address = _bad(code)
    response = await post(index.client, UPDATE, message(UPDATE, transactions, address),
                          index.producer(ADDRESS, OWN))
    fault = fault_of(response)
    assert response.status_code == 500
    assert fault is not None
    assert (fault.code, fault.faultcode) == (code, "soap:Client")
    assert fault.faultstring.startswith(f"{code}: ")
    assert await topic_size(kafka_bootstrap_servers, index.settings.updates_topic) == 0


async def test_update_makes_this_index_the_owner_and_only_for_the_producers_own_addresses(
    index: RivIndex, kafka_bootstrap_servers: str
) -> None:
    foreign = [tx(engagement(patient(410), logical_address="SE2321000016-SOMEONEELSE"))]
    refused = fault_of(await post(index.client, UPDATE, message(UPDATE, foreign), index.producer()))
    assert refused is not None
    assert refused.code == "producer.not_owner"
    claimed = engagement(patient(411))
    claimed.owner = OTHER_INDEX  # Update R6: whatever a producer says, this index owns it
    answer_of(await post(index.client, UPDATE, message(UPDATE, [tx(claimed)]), index.producer()))
    await wait_for(lambda: _rows(index, {patient(411)}), 20)
    assert [owner for _, owner, _ in await _rows(index, {patient(411)})] == ["NA"]
    assert await topic_size(kafka_bootstrap_servers, index.settings.updates_topic) == 1


async def test_process_notification_drops_this_index_own_and_moves_what_another_index_owns(
    index: RivIndex,
) -> None:
    p = patient(420)
    answer_of(await post(index.client, UPDATE, message(UPDATE, [tx(engagement(p))]),
                         index.producer()))
    await wait_for(lambda: _rows(index, {p}), 20)
    moved, returned = engagement(p), engagement(p, categorization="dia")
    moved.owner, returned.owner = OTHER_INDEX, OWN
    answer = answer_of(await post(index.client, PROCESS_NOTIFICATION,
                                  message(PROCESS_NOTIFICATION, [tx(moved), tx(returned)]),
                                  index.system()))
    assert ei.result_code(answer, PROCESS_NOTIFICATION) == "OK"

    async def moved_over() -> bool:
        return [o for _, o, _ in await _rows(index, {p})] == [OTHER_INDEX]

    await wait_for(moved_over, 20)  # this index's copy deleted, the returned one never stored


async def test_a_notification_without_owner_is_ei004_and_a_producer_may_not_send_one(
    index: RivIndex,
) -> None:
    nameless = [tx(engagement(patient(430)))]
    fault = fault_of(await post(index.client, PROCESS_NOTIFICATION,
                                message(PROCESS_NOTIFICATION, nameless), index.system()))
    assert fault is not None
    assert fault.code == "EI004"
    fault = fault_of(await post(index.client, PROCESS_NOTIFICATION,
                                message(PROCESS_NOTIFICATION, nameless), index.producer()))
    assert fault is not None
    assert fault.code == "role.missing"
