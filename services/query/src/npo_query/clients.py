"""The services this one calls, each behind a small Protocol, with the httpx implementations.

One pooled ``httpx.AsyncClient`` serves all three; timeouts are given per call. Trace context
travels in W3C headers. Patient ids go in bodies only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx
from opentelemetry import propagate
from opentelemetry.context import Context
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from .decision import Decision, EngagementVerdict
from .domain import IndexEntry, Target

TokenSource = Callable[[], str]


class Unavailable(Exception):
    """A platform service did not give a usable answer; ``code`` names what went wrong."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class IndexClient(Protocol):
    async def find(self, patient_id: str, service_domain: str) -> list[IndexEntry]: ...


class ConsentClient(Protocol):
    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision: ...


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
    """FindContent at the engagement index, following its pages."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: TokenSource,
                 timeout_s: float, page_size: int) -> None:
        self._http, self._url, self._token = http, f"{base_url.rstrip('/')}/find-content", token
        self._timeout, self._page_size = timeout_s, page_size

    async def find(self, patient_id: str, service_domain: str) -> list[IndexEntry]:
        body: dict[str, Any] = {"registeredResidentIdentification": patient_id,
                                "serviceDomain": service_domain, "pageSize": self._page_size}
        found: list[IndexEntry] = []
        while True:
            page = await self._page(body)
            found += [IndexEntry(**e.model_dump()) for e in page.engagements]
            if page.next_page_token is None:
                return found
            body["pageToken"] = page.next_page_token

    async def _page(self, body: dict[str, Any]) -> _FindContentPage:
        try:
            answer = await self._http.post(self._url, json=body, timeout=self._timeout,
                                           headers=traced_headers(self._token()))
        except httpx.HTTPError as error:
            raise Unavailable("index.unreachable", type(error).__name__) from None
        if answer.status_code != 200:
            raise Unavailable("index.http_status", str(answer.status_code))
        try:
            return _FindContentPage.model_validate_json(answer.content)
        except ValidationError:
            raise Unavailable("index.invalid_answer") from None


class _Verdict(BaseModel):
    id: str
    allowed: bool
    basis: str
    reason_code: str | None = None


class _DecisionOut(BaseModel):
    outcome: str
    basis: str
    reason_code: str | None = None
    blocked_information_exists: bool = False
    protected_identity: bool = False
    protected_fields: list[str] = []
    emergency_reason: str | None = None
    engagements: list[_Verdict]


class HttpConsentClient:
    """The consent service's ``POST /v1/decisions``, called with the reader's own token."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout_s: float) -> None:
        self._http, self._url = http, f"{base_url.rstrip('/')}/v1/decisions"
        self._timeout = timeout_s

    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision:
        body = {"patient_id": patient_id, "categories": categories,
                "engagements": [_engagement(t) for t in targets]}
        try:
            answer = await self._http.post(self._url, json=body, timeout=self._timeout,
                                           headers=traced_headers(bearer))
        except httpx.HTTPError as error:
            raise Unavailable("consent.unreachable", type(error).__name__) from None
        if answer.status_code != 200:
            raise Unavailable("consent.http_status", str(answer.status_code))
        try:
            out = _DecisionOut.model_validate_json(answer.content)
        except ValidationError:
            raise Unavailable("consent.invalid_answer") from None
        return Decision(
            out.outcome, out.basis, out.reason_code, out.blocked_information_exists,
            out.protected_identity, tuple(out.protected_fields),
            {v.id: EngagementVerdict(v.allowed, v.basis, v.reason_code) for v in out.engagements},
            out.emergency_reason or "",
        )


def _engagement(target: Target) -> dict[str, Any]:
    # The index has no care unit per engagement; the logical address stands for the unit
    # (the consent service matches unit blocks on either). Only health-care information is
    # in the index, so social_services is False here.
    return {"id": target.id, "data_controller": target.data_controller, "care_unit": "",
            "logical_address": target.logical_address, "social_services": False}
