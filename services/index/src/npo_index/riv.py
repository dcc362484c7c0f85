"""RIV-TA front end of the index: Update, ProcessNotification and FindContent over SOAP 1.1
(RIVTABP21), one URL per responder, ``GET <url>?wsdl`` for its WSDL.

Parse (safely), check, call the same use cases as the JSON routes (``service.py``), render. Every
refusal is a SOAP fault with a stable code and changes nothing; the engagement index's own
rules answer with Inera's EI codes in Inera's words (EI000 technical/count, EI001 schema, EI002
duplicate, EI003 logical address not this index, EI004 field rules, EI005/EI006 reserved
logical address/source system); what Inera has no code for keeps this project's
(``EI007``, ``producer.not_owner``, ``xml.*``, ``soap.*``, the token's codes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import APIRouter, Request

from npo_engagement import MAX_TRANSACTIONS, Code, InvalidUpdate, Violation
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.identity import Role
from npo_producer import EngagementProducer
from npo_rivta import engagementindex as ei
from npo_rivta import wsdl
from npo_rivta.contracts import FIND_CONTENT, PROCESS_NOTIFICATION, UPDATE, Interaction
from npo_rivta.endpoint import Answer, Call, Responder, serve
from npo_rivta.headers import logical_address
from npo_rivta.soap import Envelope, SoapFault

from .api import READER_ROLES
from .config import IndexSettings
from .domain import Record
from .domain_access import Caller, Refused
from .service import Notifications, find_all, publish_notification, publish_transactions
from .store import FindQuery, IndexStore

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)  # SOAP: described by the WSDLs, not by OpenAPI


async def _update(call: Call) -> Answer:
    request, claims = call.request, call.claims
    transactions = _counted(ei.transactions(call.envelope.body, UPDATE))
    for tx in transactions:
        tx.engagement.owner = ""  # Update R6: this index owns what it is sent
    producer: EngagementProducer = request.app.state.producer_factory(claims.sub)
    try:
        await publish_transactions(producer, request.app.state.rules, Caller.of(claims),
                                   transactions)
    except InvalidUpdate as error:
        raise _ei_fault(error, transactions, _settings(request)) from None
    except Refused as refused:
        raise SoapFault(refused.code, refused.detail) from None
    return Answer(ei.result_response(UPDATE))


async def _process_notification(call: Call) -> Answer:
    transactions = _counted(ei.transactions(call.envelope.body, PROCESS_NOTIFICATION))
    target: Notifications = call.request.app.state.notifications
    try:
        await publish_notification(target, transactions)
    except InvalidUpdate as error:
        raise _ei_fault(error, transactions, _settings(call.request)) from None
    return Answer(ei.result_response(PROCESS_NOTIFICATION))


async def _find_content(call: Call) -> Answer:
    request = call.request
    settings = _settings(request)
    asked = ei.find_content_request(call.envelope.body)
    exact = {k: v for k, v in asked.filters.items() if v}  # an empty filter element asks nothing
    if exact.get("owner") == settings.riv_logical_address:
        exact["owner"] = "NA"  # this index's own records are stored without an owner
    query = FindQuery(
        asked.patient, (asked.service_domain,), categorization=exact.get("categorization"),
        logical_address=exact.get("logical_address"),
        business_object_instance_identifier=exact.get("business_object_instance_identifier"),
        clinical_process_interest_id=exact.get("clinical_process_interest_id"),
        source_system=exact.get("source_system"), data_controller=exact.get("data_controller"),
        owner=exact.get("owner"), most_recent_content_from=asked.most_recent_content,
        limit=settings.find_content_max_page,
    )
    store: IndexStore = request.app.state.store
    try:
        found = await find_all(store, Caller.of(call.claims), query, settings.find_content_systems,
                               at_most=settings.riv_find_content_max)
    except Refused as refused:
        raise SoapFault(refused.code, refused.detail) from None
    if found is None:
        raise SoapFault("EI000", "A technical error has occurred, error message: more than "
                        f"{settings.riv_find_content_max} engagements match; narrow the question.")
    return Answer(ei.find_content_response(
        _engagement(r, settings.riv_logical_address) for r in found))


def _check(request: Request, interaction: Interaction, env: Envelope) -> None:
    """Addressed to this index (EI003) and valid by the responder's schema (EI001)."""
    settings = _settings(request)
    address = logical_address(env)
    if address != settings.riv_logical_address:
        raise SoapFault("EI003", f"Invalid routing. Logical address is {address or 'missing'} but "
                        f"the owner is {settings.riv_logical_address}. They must be the same. "
                        "See rule for Update-R7 in service contract")
    errors = wsdl.schema_errors(interaction, env.body)
    if errors:
        raise SoapFault("EI001", "The payload does not follow the XML Schema, error message: "
                        + "; ".join(errors))


def _max_bytes(request: Request) -> int:
    return _settings(request).riv_max_body_bytes


_RESPONDERS = (
    (UPDATE, (Role.PRODUCER,), _update),
    (PROCESS_NOTIFICATION, (Role.SYSTEM, Role.ADMIN), _process_notification),
    (FIND_CONTENT, READER_ROLES, _find_content),
)
for _interaction, _roles, _handler in _RESPONDERS:
    serve(router, Responder(_interaction, _roles, _handler, _check, _max_bytes, log))
PATHS = frozenset(i.path for i, _, _ in _RESPONDERS)  # the request guard's refusals: faults


def _counted(transactions: list[EngagementTransaction]) -> list[EngagementTransaction]:
    if len(transactions) > MAX_TRANSACTIONS:
        raise SoapFault("EI000", "A technical error has occurred, error message: The request "
                        f"contains more than {MAX_TRANSACTIONS} engagements. Maximum number of "
                        f"engagements per request is {MAX_TRANSACTIONS}.")
    return transactions


# The order in which Inera's validator meets the rules within one transaction.
_RANK = {Code.COUNT: 0, Code.DUPLICATE_KEY: 1, Code.LOOP: 2, Code.MANDATORY: 3, Code.LENGTH: 4,
         Code.TIME: 5, Code.PATIENT: 6, Code.PRODUCER: 7}


def _ei_fault(error: InvalidUpdate, transactions: Sequence[EngagementTransaction],
              settings: IndexSettings) -> SoapFault:
    """The first violation as Inera's index words it (transactions numbered from 1)."""
    first = min(error.violations, key=lambda v: (v.transaction, _RANK[v.code]))
    number = first.transaction + 1
    if first.code is Code.COUNT:
        return SoapFault("EI000", f"A technical error has occurred, error message: {first.detail}")
    if first.code is Code.DUPLICATE_KEY:
        return SoapFault("EI002", f"EngagementTransaction #{number} has the same key as an earlier "
                         "one. That is not allowed. See rule for Update-R1 in service contract")
    if first.code is Code.LOOP:
        return _reserved(transactions, first, settings.own_addresses)
    if first.code is Code.PRODUCER:
        return SoapFault("EI007", f"The sourceSystem in EngagementTransaction #{number} is not the "
                         "system of the caller's token")
    return SoapFault("EI004", f"The payload does not validate, error message: {first}")


def _reserved(transactions: Sequence[EngagementTransaction], violation: Violation,
              own: frozenset[str]) -> SoapFault:
    number = violation.transaction + 1
    engagement = _nth(transactions, violation.transaction)
    if engagement.logical_address in own:
        return SoapFault("EI005", f"The logicalAddress in EngagementTransaction #{number} is "
                         f"reserved and not allowed, hsa-id: {engagement.logical_address}")
    return SoapFault("EI006", f"The sourceSystem in EngagementTransaction #{number} is reserved "
                     f"and not allowed, hsa-id: {engagement.source_system}")


def _nth(transactions: Sequence[EngagementTransaction], index: int) -> Engagement:
    if 0 <= index < len(transactions):  # violations name transactions by their request order
        return transactions[index].engagement
    return Engagement()


def _engagement(record: Record, own_address: str) -> Engagement:
    identity = record.identity
    engagement = Engagement(
        registered_resident_identification=identity.patient,
        service_domain=identity.service_domain, categorization=identity.categorization,
        logical_address=identity.logical_address,
        business_object_instance_identifier=identity.business_object_instance_identifier,
        clinical_process_interest_id=identity.clinical_process_interest_id,
        most_recent_content=record.most_recent_content, source_system=identity.source_system,
        data_controller=identity.data_controller,
        owner=own_address if identity.owner == "NA" else identity.owner,
    )
    engagement.creation_time.FromDatetime(record.creation_time)
    engagement.update_time.FromDatetime(record.update_time)
    return engagement


def _settings(request: Request) -> IndexSettings:
    settings: IndexSettings = request.app.state.settings
    return settings
