"""The platform services this one calls (index, consent), each behind a small Protocol, with
their HTTP implementations.

One pooled ``aiohttp.ClientSession`` (``pooled_session``) serves both, apart from the producers'
pool (another session of the same kind), so that slow producers cannot take the connections
an index lookup needs. Timeouts are given per call. Trace context travels in W3C headers.
Patient ids go in bodies only.

aiohttp, as for the producers, not httpx: an index lookup cost many times the CPU with
httpx's pool under concurrent calls (docs/performance/code-notes.md). One lookup per overview:
FindContent's ``serviceDomains`` names all the service domains asked (eight for all 17
categories) in one call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import aiohttp
import aiohttp.abc
from opentelemetry import propagate
from opentelemetry.context import Context
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from npo_platform.contracts.consent_http import (
    DecisionIn,
    DecisionOut,
    EngagementIn,
    RecordPolicyOut,
    StandingIn,
    StandingOut,
)

from .domain import Decision, EngagementVerdict, IndexEntry, RecordPolicy, Target

TokenSource = Callable[[], str]
_Answer = TypeVar("_Answer", bound=BaseModel)


class Unavailable(Exception):
    """A platform service did not give a usable answer; ``code`` names what went wrong."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class IndexClient(Protocol):
    async def find(self, patient_id: str, service_domains: Sequence[str]) -> list[IndexEntry]:
        """The patient's engagements in all of ``service_domains``."""
        ...


class ConsentClient(Protocol):
    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision: ...

    async def has_relation(self, bearer: str, patient_id: str) -> bool:
        """Whether the reader's unit has a relation with the patient in force now."""
        ...


def traced_headers(token: str, context: Context | None = None) -> dict[str, str]:
    """The bearer token and the W3C trace headers of ``context`` (default: the current one)."""
    headers = {"Authorization": f"Bearer {token}"}
    propagate.inject(headers, context=context)
    return headers


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _Engagement(_Camel):
    service_domain: str
    categorization: str
    logical_address: str
    source_system: str = ""
    data_controller: str = ""
    most_recent_content: str = ""


class _FindContentPage(_Camel):
    engagements: list[_Engagement]
    next_page_token: str | None = None


class HttpIndexClient:
    """FindContent at the engagement index for several service domains at once, following its
    pages."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: TokenSource,
                 timeout_s: float, page_size: int) -> None:
        self._http, self._url, self._token = http, f"{base_url.rstrip('/')}/find-content", token
        self._timeout, self._page_size = aiohttp.ClientTimeout(total=timeout_s), page_size

    async def find(self, patient_id: str, service_domains: Sequence[str]) -> list[IndexEntry]:
        if not service_domains:
            return []  # FindContent refuses an empty list; nothing asked, nothing found
        body: dict[str, Any] = {"registeredResidentIdentification": patient_id,
                                "serviceDomains": list(service_domains),
                                "pageSize": self._page_size}
        found: list[IndexEntry] = []
        while True:
            page = await self._page(body)
            found += [IndexEntry(**e.model_dump()) for e in page.engagements]
            if page.next_page_token is None:
                return found
            body["pageToken"] = page.next_page_token

    async def _page(self, body: dict[str, Any]) -> _FindContentPage:
        return await _post(self._http, self._url, json.dumps(body).encode(),
                           traced_headers(self._token()), self._timeout, "index", _FindContentPage)


class HttpConsentClient:
    """The consent service's ``POST /v1/decisions`` and ``POST /v1/standing`` (its contract:
    ``npo_platform.contracts.consent_http``), called with the reader's own token."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        base = base_url.rstrip("/")
        self._http, self._decisions, self._standing = http, f"{base}/v1/decisions", f"{base}/v1/standing"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision:
        # Our own values, checked by the consent service: built without validating them twice.
        body = DecisionIn.model_construct(patient_id=patient_id, categories=categories,
                                          engagements=[_engagement(t) for t in targets])
        out = await _post(self._http, self._decisions, _json(body), traced_headers(bearer),
                          self._timeout, "consent", DecisionOut)
        return Decision(
            out.outcome, out.basis, out.reason_code, out.blocked_information_exists,
            out.protected_identity, tuple(out.protected_fields),
            {v.id: EngagementVerdict(v.allowed, v.basis, v.reason_code) for v in out.engagements},
            out.emergency_reason or "", _policy(out.record_policy),
        )

    async def has_relation(self, bearer: str, patient_id: str) -> bool:
        body = StandingIn.model_construct(patient_id=patient_id)
        out = await _post(self._http, self._standing, _json(body),
                          traced_headers(bearer), self._timeout, "consent", StandingOut)
        return out.relation is not None


def _policy(out: RecordPolicyOut) -> RecordPolicy:
    return RecordPolicy(out.own_care_giver, out.own_closed, out.others_closed,
                        frozenset(out.closed_care_givers), frozenset(out.closed_care_units),
                        frozenset(out.unit_blocked_care_givers))


def pooled_session(max_connections: int,
                   resolver: aiohttp.abc.AbstractResolver | None = None) -> aiohttp.ClientSession:
    """A pooled session for many hosts (producers, or the platform services): no cookie jar
    (a caller's cookies are never sent anywhere; tokens go in each call's headers)."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, resolver=resolver)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


async def _post(http: aiohttp.ClientSession, url: str, body: bytes,
                headers: dict[str, str], bound: aiohttp.ClientTimeout, service: str,
                answer_model: type[_Answer]) -> _Answer:
    """POST ``body`` (JSON) and read the answer as ``answer_model``; every way it can fail is
    ``Unavailable``, as the caller must fail closed on each: ``{service}.unreachable`` (no
    connection, a broken answer or the timeout), ``.http_status`` (not 200) or
    ``.invalid_answer`` (not the model's shape)."""
    try:
        async with http.post(url, data=body, timeout=bound,
                             headers=headers | {"Content-Type": "application/json"}) as answer:
            status, content = answer.status, await answer.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise Unavailable(f"{service}.unreachable", type(error).__name__) from None
    if status != 200:
        raise Unavailable(f"{service}.http_status", str(status))
    try:
        return answer_model.model_validate_json(content)
    except ValidationError:
        raise Unavailable(f"{service}.invalid_answer") from None


def _json(body: BaseModel) -> bytes:
    return body.model_dump_json().encode()


def _engagement(target: Target) -> EngagementIn:
    # The index has no care unit per engagement: the consent service withholds a whole target
    # only for a unit block naming its logical address; the record policy settles the records
    # of each unit. Social-services addresses are never asked about (the plan settles them).
    return EngagementIn.model_construct(id=target.id, data_controller=target.data_controller,
                                        care_unit="", logical_address=target.logical_address,
                                        social_services=False)
