"""A SOAP client built by someone else (zeep) from the WSDLs the index serves calls every one
of its RIV-TA endpoints over real HTTP: Update, ProcessNotification, FindContent, and reads
Inera-style faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
import zeep
import zeep.exceptions
from index_helpers import ADDRESS, CONTROLLER, PRODUCER, Tokens, patient, wait_for
from riv_helpers import OWN, RivIndex, riv_index

from npo_deploy.processes import free_port
from npo_index.store import FindQuery
from npo_rivta.contracts import FIND_CONTENT, PROCESS_NOTIFICATION, UPDATE, Interaction

pytestmark = pytest.mark.integration
DOMAIN = "riv:clinicalprocess:healthcond:description"
P = patient(600)


@asynccontextmanager
async def _serving(index: RivIndex) -> AsyncIterator[str]:
    port = free_port()
    transport = index.client._transport  # the app the test client drives
    app = transport.app
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def _client(base: str, interaction: Interaction, headers: dict[str, str]) -> zeep.Client:
    """Built from the WSDL (and the schemas it imports) fetched from the index itself."""
    session = requests.Session()
    session.headers.update(headers)
    transport = zeep.Transport(session=session, timeout=10, operation_timeout=30)
    return zeep.Client(f"{base}{interaction.path}?wsdl", transport=transport)


def _engagement(**changes: str) -> dict[str, str]:
    return {
        "registeredResidentIdentification": P, "serviceDomain": DOMAIN, "categorization": "voo",
        "logicalAddress": ADDRESS, "businessObjectInstanceIdentifier": "NA",
        "clinicalProcessInterestId": "NA", "mostRecentContent": "20260102030405",
        "sourceSystem": PRODUCER, "dataController": CONTROLLER, **changes,
    }


@pytest.fixture
async def index(database_url: str, kafka_bootstrap_servers: str, tmp_path: Path) -> AsyncIterator[RivIndex]:
    async with riv_index(database_url, kafka_bootstrap_servers, Tokens(tmp_path / "keys")) as running:
        yield running


async def test_zeep_built_from_the_served_wsdls_calls_every_index_endpoint(
    index: RivIndex,
) -> None:
    async with _serving(index) as base:
        def calls() -> tuple[Any, Any, Any, zeep.exceptions.Fault]:
            update = _client(base, UPDATE, index.producer())
            answer = update.service.Update(
                engagementTransaction=[{"deleteFlag": False, "engagement": _engagement()}],
                _soapheaders={"LogicalAddress": OWN})
            notify = _client(base, PROCESS_NOTIFICATION, index.system())
            notified = notify.service.ProcessNotification(
                engagementTransaction=[{"deleteFlag": False, "engagement": _engagement(
                    categorization="dia", owner="SE2321000016-OTHERIDX")}],
                _soapheaders={"LogicalAddress": OWN})
            try:
                update.service.Update(engagementTransaction=[{"deleteFlag": False,
                                                              "engagement": _engagement()}],
                                      _soapheaders={"LogicalAddress": "SE2321000016-ELSEWHERE"})
            except zeep.exceptions.Fault as fault:
                return answer, notified, update, fault
            raise AssertionError("a foreign LogicalAddress must be a fault")

        answer, notified, _, fault = await asyncio.to_thread(calls)
        assert (answer.ResultCode, notified.ResultCode) == ("OK", "OK")
        assert fault.message.startswith("EI003: Invalid routing.")

        async def both_stored() -> bool:
            return len(await index.worker.store.find(FindQuery(P, (DOMAIN,)))) == 2

        await wait_for(both_stored, 20)

        def find() -> Any:
            client = _client(base, FIND_CONTENT, index.system())
            return client.service.FindContent(registeredResidentIdentification=P,
                                              serviceDomain=DOMAIN,
                                              _soapheaders={"LogicalAddress": OWN})

        found = await asyncio.to_thread(find)
    by_category = {e.categorization: e for e in found.engagement}
    assert set(by_category) == {"voo", "dia"}
    assert by_category["voo"].owner == OWN  # this index's own, named as the contract does
    assert by_category["dia"].owner == "SE2321000016-OTHERIDX"
    assert by_category["voo"].mostRecentContent == "20260102030405"
    assert len(by_category["voo"].updateTime) == 14
