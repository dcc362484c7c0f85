"""One contract for the routing store, run against the in-memory and the PostgreSQL store;
and the admin API that manages it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from query_fakes import FakeConsent, FakeIndex
from query_fixtures import VERIFIER, token

from npo_platform.db import apply_migrations, create_pool
from npo_platform.identity import Role
from npo_query.routing import Authorisation, Route
from npo_query.store import RoutingStore
from npo_query.store_memory import InMemoryRoutingStore
from npo_query.store_pg import PostgresRoutingStore

NOTES_RESPONDER = "/riv/clinicalprocess/healthcond/description/GetCareDocumentationResponder/2"
SCHEMA_PREFIX = "npo_query_contract_"


class RoutingStoreContract:
    @pytest.fixture
    async def store(self) -> RoutingStore:
        raise NotImplementedError

    async def test_a_route_and_an_authorisation_make_a_target_callable(
        self, store: RoutingStore
    ) -> None:
        await store.put_routes([Route("LA1", "http://p1")])
        await store.put_authorisations([Authorisation("C", "LA1", "notes")])
        table = await store.table()
        assert table.endpoint("C", "LA1", "notes") == "http://p1"
        assert table.endpoint("C", "LA1", "laboratory") is None

    async def test_routes_are_replaced_and_authorisations_idempotent(
        self, store: RoutingStore
    ) -> None:
        await store.put_routes([Route("LA1", "http://old")])
        await store.put_routes([Route("LA1", "http://new")])
        twice = [Authorisation("C", "LA1", "*")] * 2
        await store.put_authorisations(twice)
        await store.put_authorisations(twice)
        table = await store.table()
        assert table.routes == {"LA1": "http://new"}
        assert table.authorised == frozenset({("C", "LA1", "*")})

    async def test_deleting_reports_whether_something_was_there(self, store: RoutingStore) -> None:
        await store.put_routes([Route("LA1", "http://p1")])
        await store.put_authorisations([Authorisation("C", "LA1", "*")])
        assert await store.delete_route("LA1") is True
        assert await store.delete_route("LA1") is False
        assert await store.delete_authorisation(Authorisation("C", "LA1", "*")) is True
        assert await store.delete_authorisation(Authorisation("C", "LA1", "*")) is False
        assert (await store.table()).endpoint("C", "LA1", "notes") is None

    async def test_a_contracts_route_is_kept_beside_the_producers_and_goes_with_it(
        self, store: RoutingStore
    ) -> None:
        rivta = Route("LA1", f"http://p2{NOTES_RESPONDER}", category="notes", protocol="rivta")
        await store.put_routes([Route("LA1", "http://p1"), rivta])
        await store.put_routes([Route("LA1", f"http://p3{NOTES_RESPONDER}", category="notes",
                                       protocol="rivta")])
        await store.put_authorisations([Authorisation("C", "LA1", "*")])
        table = await store.table()
        assert table.endpoint("C", "LA1", "notes") == f"http://p3{NOTES_RESPONDER}"
        assert table.endpoint("C", "LA1", "laboratory") == "http://p1"
        assert await store.delete_route("LA1") is True
        assert (await store.table()).endpoint("C", "LA1", "notes") is None

    async def test_a_social_services_address_is_declared_and_can_be_redeclared(
        self, store: RoutingStore
    ) -> None:
        await store.put_routes([Route("LA1", "http://p1"), Route("SOL1", "http://p2", True)])
        assert (await store.table()).social_services == frozenset({"SOL1"})
        await store.put_routes([Route("SOL1", "http://p2")])
        assert (await store.table()).social_services == frozenset()


class TestInMemoryRoutingStore(RoutingStoreContract):
    @pytest.fixture
    async def store(self) -> RoutingStore:
        return InMemoryRoutingStore()


@pytest.mark.integration
class TestPostgresRoutingStore(RoutingStoreContract):
    @pytest.fixture
    async def store(self, database_url: str) -> AsyncIterator[RoutingStore]:
        schema = SCHEMA_PREFIX + uuid.uuid4().hex[:8]
        await apply_migrations(database_url, schema=schema, package="npo_query.migrations")
        pool = await create_pool(database_url, schema=schema)
        try:
            yield PostgresRoutingStore(pool)
        finally:
            await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await pool.close()


async def test_the_admin_api_manages_the_routing_table() -> None:
    from npo_query.config import QuerySettings
    from npo_query.main import Parts, create_app

    config = QuerySettings(ensure_topics=False, run_consumers=False)
    publisher = _NoPublisher()
    parts = Parts(index=FakeIndex(), consent=FakeConsent(), routing_store=InMemoryRoutingStore(),
                  publisher=publisher, tokens=lambda: "t",  # type: ignore[arg-type]
                  producer_tokens=lambda endpoint: "t")
    app = create_app(config, parts=parts, token_verifier=VERIFIER)
    admin = {"Authorization": f"Bearer {token(Role.ADMIN)}"}
    clinician = {"Authorization": f"Bearer {token(Role.CLINICIAN)}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q.test") as client:
            route = [{"logical_address": "LA1", "endpoint": "http://p1/"}]
            assert (await client.put("/v1/routing/routes", json=[
                {"logical_address": "LA1", "endpoint": "http://p1/"},
                {"logical_address": "LA1", "endpoint": f"http://p1{NOTES_RESPONDER}",
                 "category": "notes", "protocol": "rivta"}], headers=admin)).status_code == 204
            bad = await client.put("/v1/routing/authorisations", json=[
                {"consumer_system": "C", "logical_address": "LA1", "category": "nonsense"}],
                headers=admin)
            ok = await client.put("/v1/routing/authorisations", json=[
                {"consumer_system": "C", "logical_address": "LA1", "category": "notes"}],
                headers=admin)
            forbidden = await client.put("/v1/routing/routes", json=route, headers=clinician)
            table = (await client.get("/v1/routing", headers=admin)).json()
            gone = await client.delete("/v1/routing/routes/LA1", headers=admin)
            missing = await client.delete("/v1/routing/routes/LA1", headers=admin)
    assert bad.status_code == 422
    assert bad.json()["code"] == "category.unknown"
    assert ok.status_code == 204
    assert forbidden.status_code == 403
    # A route names its protocol: the producer's json route, and the rivta route of a contract.
    assert table == {"routes": [{"logical_address": "LA1", "endpoint": "http://p1",
                                 "social_services": False, "category": None, "protocol": "json"},
                                {"logical_address": "LA1", "endpoint": f"http://p1{NOTES_RESPONDER}",
                                 "social_services": False, "category": "notes", "protocol": "rivta"}],
                     "authorisations": [{"consumer_system": "C", "logical_address": "LA1",
                                         "category": "notes"}]}
    assert gone.status_code == 204
    assert missing.status_code == 404


class _NoPublisher:
    async def publish(self, *args: object) -> None:
        raise AssertionError("nothing is published by the admin API")


SSRF = [  # what the security probe stored, and the query service then sent its token to
    ("http://127.0.0.1:15432/x", "routing.endpoint_forbidden"),  # this machine: PostgreSQL
    ("http://169.254.169.254/latest/meta-data", "routing.endpoint_forbidden"),  # cloud metadata
    ("http://0x7f000001/x", "routing.endpoint_forbidden"),
    ("http://2130706433/x", "routing.endpoint_forbidden"),
    ("http://localhost:19092/x", "routing.endpoint_forbidden"),  # the broker
    ("http://[::ffff:127.0.0.1]/x", "routing.endpoint_forbidden"),
    ("http://user:pass@producer.example/x", "routing.endpoint_invalid"),
    ("http://producer.example/x\r\nX-Injected: 1", "routing.endpoint_invalid"),
    ("http://producer.example/x?token=1", "routing.endpoint_invalid"),
    ("file:///etc/passwd", "routing.endpoint_invalid"),
]


@pytest.mark.parametrize(("endpoint", "code"), SSRF, ids=[e for e, _ in SSRF])
async def test_a_route_may_point_only_where_a_producer_may_be(endpoint: str, code: str) -> None:
    from npo_query.config import QuerySettings
    from npo_query.main import Parts, create_app

    store = InMemoryRoutingStore()
    parts = Parts(index=FakeIndex(), consent=FakeConsent(), routing_store=store,
                  publisher=_NoPublisher(), tokens=lambda: "t",  # type: ignore[arg-type]
                  producer_tokens=lambda endpoint: "t")
    app = create_app(QuerySettings(ensure_topics=False, run_consumers=False), parts=parts,
                     token_verifier=VERIFIER)
    admin = {"Authorization": f"Bearer {token(Role.ADMIN)}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q.test") as client:
            answer = await client.put("/v1/routing/routes", headers=admin,
                                      json=[{"logical_address": "LA1", "endpoint": endpoint}])
    assert (answer.status_code, answer.json()["code"]) == (422, code)
    assert (await store.table()).routes == {}
