"""HTTP (JSON): FindContent, coverage statistics, producer ingest and the organisation directory.
Parses, calls a use case (service.py), renders; no SQL here (riv.py is the RIV-TA front end).

Roles: coverage needs ``system``, ``operator`` or ``admin``; FindContent answers only the
aggregating systems and ingest only producers for themselves (domain_access.py, the rules of both).
Patient ids travel in request bodies only, never in URLs.
"""

from __future__ import annotations

from typing import Annotated, Self

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import to_json

from npo_engagement import InvalidUpdate
from npo_platform.categories import CATEGORIES
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.identity import BearerClaims, Claims, ProducerClaims, Role, require_roles
from npo_platform.problems import Problem
from npo_platform.schemas import RequestModel
from npo_producer import EngagementProducer

from .directory import Directory, Names, names
from .domain import ControllerCoverage, Record, coverage_report
from .domain_access import Caller, Refused
from .service import find_engagements, publish_transactions
from .store import FindQuery, IndexStore

router = APIRouter()
# Who may read coverage; the RIV-TA FindContent (riv.py) asks it too, before its own rule
# (domain_access.check_lookup) applies.
READER_ROLES = (Role.SYSTEM, Role.OPERATOR, Role.ADMIN)
ReaderClaims = Annotated[Claims, Depends(require_roles(*READER_ROLES))]
OperatorOrAdmin = Annotated[Claims, Depends(require_roles(Role.OPERATOR, Role.ADMIN))]
# Whoever a page serves: the names it shows in place of codes.
PAGE_ROLES = (Role.CLINICIAN, Role.COMPLIANCE_OFFICER, Role.PATIENT, Role.OPERATOR, Role.ADMIN)
PageReader = Annotated[Claims, Depends(require_roles(*PAGE_ROLES))]
_CONTENT_TIME = r"^[0-9]{14}$"
INGEST_MAX_BODY = 2 * 1024 * 1024  # 1000 transactions of engagements at their field limits
_KEY_HEX = 64  # a page token: the last engagement's key (32 bytes) and its service domain, in hex
_ServiceDomain = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]


class _Camel(RequestModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FindContentRequest(_Camel):
    registered_resident_identification: str = Field(min_length=1, max_length=32)
    service_domain: _ServiceDomain | None = Field(None, description="EI's one service domain")
    service_domains: list[_ServiceDomain] | None = Field(
        None, min_length=1, max_length=32,
        description="instead of serviceDomain: several in one answer, in service domain order",
    )
    categorization: str | None = None
    logical_address: str | None = None
    business_object_instance_identifier: str | None = None
    clinical_process_interest_id: str | None = None
    source_system: str | None = None
    data_controller: str | None = None
    owner: str | None = None
    most_recent_content: str | None = Field(None, pattern=_CONTENT_TIME, description="on or after")
    page_size: int = Field(100, ge=1)
    page_token: str | None = Field(None, pattern=rf"^[0-9a-f]{{{_KEY_HEX}}}(?:[0-9a-f]{{2}})+$")

    @model_validator(mode="after")
    def _one_way_to_name_domains(self) -> Self:
        if (self.service_domain is None) == (self.service_domains is None):
            raise ValueError("give serviceDomain or serviceDomains (one of them)")
        return self

    def domains(self) -> tuple[str, ...]:
        return (self.service_domain,) if self.service_domain else tuple(self.service_domains or ())


class EngagementBody(_Camel):
    registered_resident_identification: str
    service_domain: str
    categorization: str
    logical_address: str
    business_object_instance_identifier: str = ""
    clinical_process_interest_id: str = ""
    most_recent_content: str = ""
    source_system: str
    data_controller: str
    owner: str = ""


class EngagementOut(EngagementBody):
    creation_time: str
    update_time: str


class FindContentResponse(_Camel):
    engagements: list[EngagementOut]
    next_page_token: str | None


class TransactionBody(_Camel):
    engagement: EngagementBody
    delete_flag: bool = False


class IngestRequest(_Camel):
    transactions: list[TransactionBody] = Field(min_length=1)


class IngestResponse(_Camel):
    event_ids: list[str]


class CoverageEntry(_Camel):
    data_controller: str
    categories: list[int]
    engagements: int
    share_of_categories_1_to_11: float
    unknown_codes: list[str]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Category(_Frozen):
    number: int
    key: str
    name: str
    available: bool  # categories 1-11; 12-17 are "coming"


class DirectoryAnswer(_Frozen):
    directory: Directory
    categories: list[Category]


def _store(request: Request) -> IndexStore:
    store: IndexStore = request.app.state.store
    return store


def _producer(request: Request, claims: Claims) -> EngagementProducer:
    producer: EngagementProducer = request.app.state.producer_factory(claims.sub)
    return producer


@router.post("/find-content", tags=["index"], response_model=FindContentResponse)
async def find_content(body: FindContentRequest, request: Request, claims: BearerClaims) -> Response:
    """EI's FindContent with paging: pass ``nextPageToken`` back as ``pageToken``.

    ``serviceDomains`` instead of ``serviceDomain`` answers for several domains at once (the
    query service's overview of all categories: one call instead of eight). The answer is
    built as JSON-ready values and serialised once (FindContentResponse documents it): a model
    per engagement and FastAPI's check of them were a large share of the index's CPU per call."""
    settings = request.app.state.settings
    limit = min(body.page_size, settings.find_content_max_page)
    domains = body.domains()
    filters = body.model_dump(exclude={"page_size", "page_token", "most_recent_content",
                                       "service_domain", "service_domains"})
    query = FindQuery(
        patient=filters.pop("registered_resident_identification"),
        service_domains=domains,
        **filters,
        most_recent_content_from=body.most_recent_content,
        after=_cursor(body.page_token, domains) if body.page_token else None,
        limit=limit + 1,
    )
    try:
        found = await find_engagements(_store(request), Caller.of(claims), query,
                                       settings.find_content_systems)
    except Refused as refused:
        raise _problem(refused) from None
    page = found[:limit]
    token = _page_token(page[-1]) if len(found) > limit else None
    answer = {"engagements": [_out(r) for r in page], "nextPageToken": token}
    return Response(to_json(answer), media_type="application/json")


def _page_token(last: Record) -> str:
    return last.key.hex() + last.identity.service_domain.encode().hex()


def _cursor(token: str, domains: tuple[str, ...]) -> tuple[str, bytes]:
    try:
        domain = bytes.fromhex(token[_KEY_HEX:]).decode()
    except UnicodeDecodeError:
        domain = ""
    if domain not in domains:
        raise Problem(422, "page_token.invalid", "The page token is not one of this query's.")
    return domain, bytes.fromhex(token[:_KEY_HEX])


@router.get("/coverage", tags=["statistics"])
async def coverage(request: Request, _: ReaderClaims) -> list[CoverageEntry]:
    """Per data controller: categories published and the share of categories 1-11 covered."""
    return [_entry(c) for c in coverage_report(await _store(request).coverage())]


@router.post("/engagement-updates", status_code=202, tags=["producers"])
async def ingest(body: IngestRequest, request: Request, claims: ProducerClaims) -> IngestResponse:
    """For producers without Kafka: validated, split per patient, written to the updates topic."""
    transactions = [_transaction(t) for t in body.transactions]
    producer = _producer(request, claims)
    try:
        event_ids = await publish_transactions(
            producer, request.app.state.rules, Caller.of(claims), transactions)
    except Refused as refused:
        raise _problem(refused) from None
    except InvalidUpdate as error:
        raise Problem(
            422, error.codes[0], str(error), extensions={"codes": list(error.codes)}
        ) from None
    return IngestResponse(event_ids=event_ids)


def _problem(refused: Refused) -> Problem:
    return Problem(403, refused.code, refused.detail, extensions={"codes": [refused.code]})


def _transaction(body: TransactionBody) -> EngagementTransaction:
    engagement = Engagement(**body.engagement.model_dump())
    return EngagementTransaction(engagement=engagement, delete_flag=body.delete_flag)


def _out(record: Record) -> dict[str, str]:
    """One engagement as EngagementOut by alias (test_find_content_answers_match_their_schema)."""
    identity = record.identity
    return {
        "registeredResidentIdentification": identity.patient,
        "serviceDomain": identity.service_domain,
        "categorization": identity.categorization,
        "logicalAddress": identity.logical_address,
        "businessObjectInstanceIdentifier": identity.business_object_instance_identifier,
        "clinicalProcessInterestId": identity.clinical_process_interest_id,
        "mostRecentContent": record.most_recent_content,
        "sourceSystem": identity.source_system,
        "dataController": identity.data_controller,
        "owner": identity.owner,
        "creationTime": record.creation_time.isoformat(),
        "updateTime": record.update_time.isoformat(),
    }


def _entry(c: ControllerCoverage) -> CoverageEntry:
    return CoverageEntry(
        data_controller=c.data_controller,
        categories=list(c.categories),
        engagements=c.engagements,
        share_of_categories_1_to_11=round(c.share_available, 4),
        unknown_codes=list(c.unknown_codes),
    )


def _categories() -> list[Category]:
    return [Category(number=c.number, key=c.key, name=c.name_en, available=c.available) for c in CATEGORIES]


@router.get("/directory", tags=["statistics"])
async def get_directory(request: Request, _: OperatorOrAdmin) -> DirectoryAnswer:
    """Care givers (name, kind, county, municipality, inhabitants) and the 17 categories."""
    found: Directory | None = request.app.state.directory
    if found is None:
        raise Problem(404, "directory.not_configured", "The index has no directory (INDEX_DIRECTORY_FILE).")
    return DirectoryAnswer(directory=found, categories=_categories())


@router.get("/directory/names", tags=["statistics"])
async def get_names(request: Request, claims: PageReader) -> Names:
    """Care givers', care units' and staff's names by HSA-id (staff not for patients); empty
    without a directory, so a page shows its codes."""
    found: Directory | None = request.app.state.directory
    if found is None:
        return Names(care_givers={}, care_units={}, people={})
    return names(found, with_people=bool(set(claims.roles) & set(PAGE_ROLES) - {Role.PATIENT}))
