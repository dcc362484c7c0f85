"""RIV-TA front end of the overview, as Inera's aggregating platform serves it: every national
read contract at ``POST /riv/<domain as a path>/<Name>Responder/<major>`` (``GET …?wsdl``),
addressed to the national aggregating logical address.

Parse (``npo_rivta.endpoint``: safely, bounded, the operation checked), check the address and
the schema, call the same ``overview`` use case as the JSON route for the contract's category,
render: the merged records in the contract's answer and a ``ProcessingStatus`` SOAP header with
one entry per source. A refusal and an outage (no decision, no access log, no index) are SOAP
faults with the use case's stable code and carry no data; the access event was written first.

What the reader may be told of the sources is the JSON route's (``Told``): a source that a block
withholds (or all of whose records it withholds) is not named. When blocked information exists,
one entry says so at the aggregating platform's own address: ``NoDataSynchFailed``, causing
agent ``virtualization_platform``, error code 403, text ``blocked: …``; which producer or care
giver holds it is never told. A source withheld for another reason (no consent, say) or not in
the routing table is ``NoDataSynchFailed`` with code 403 and the reason; a producer that failed
is ``service_producer`` with its HTTP status (504 when it timed out, 503 when it could not be
reached, 502 when its answer was not the contract's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from opentelemetry import trace

from npo_platform.identifiers import PatientId
from npo_platform.identity import Role
from npo_rivta import records, wsdl
from npo_rivta.contracts import Interaction
from npo_rivta.endpoint import Answer, Call, Responder, serve
from npo_rivta.headers import (
    CausingAgent,
    SourceStatus,
    StatusCode,
    SynchError,
    logical_address,
    processing_status_header,
)
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_rivta.records import ReadContract
from npo_rivta.soap import Envelope, SoapFault

from .api import context
from .config import QuerySettings
from .domain import Cause, Record, Status, TargetResult
from .service import AccessDenied, Overview, Reading, Refused, ServiceUnavailable

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)  # SOAP: described by the WSDLs, not by OpenAPI
_TS = "%Y%m%d%H%M%S"
_FAILURE_CODES = {Cause.TIMEOUT.value: 504, Cause.CONNECTION_ERROR.value: 503,
                  Cause.INVALID_ANSWER.value: 502}
FORBIDDEN = 403


def _responder(contract: ReadContract) -> Responder:
    async def handle(call: Call) -> Answer:
        asked = records.asked(contract, call.envelope.body)
        reading = _reading(call, asked.patient_id, contract.category)
        try:
            found = await context(call.request).overviews.overview(reading)
        except Refused as refused:
            raise _fault(refused) from None
        shown = [r.document for r in _narrowed(found.records, asked)]
        statuses = sources(found, _settings(call.request).riv_logical_address)
        log.info("riv %s answered: %s, %d records, %d sources (consumer %s, correlation %s)",
                 contract.interaction.name, found.outcome.value, len(shown), len(statuses),
                 reading.consumer_system, reading.correlation_id)
        return Answer(records.answer(contract, shown), [processing_status_header(statuses)])

    return Responder(contract.interaction, (Role.CLINICIAN,), handle, _check, _max_bytes, log)


def _reading(call: Call, patient: str, category: str) -> Reading:
    try:
        patient_id = PatientId.parse(patient).value
    except ValueError:
        raise SoapFault("patient_id.invalid", "Not a valid personal identity number.") from None
    bearer = call.request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    platform = call.platform
    return Reading(call.claims, bearer, patient_id, [category],
                   platform.original_consumer or "", platform.correlation_id)


def _fault(refused: Refused) -> SoapFault:
    if isinstance(refused, AccessDenied):
        return SoapFault(refused.code, f"{refused.detail} Reason: {refused.reason_code}.")
    return SoapFault(refused.code, refused.detail, client=not isinstance(refused, ServiceUnavailable))


def _narrowed(found: Iterable[Record], asked: records.Asked) -> list[Record]:
    """The records the request's own filters (care unit, care giver, source system) keep; the
    access law has already been applied to every one of them."""
    units, givers, source = set(asked.care_units), set(asked.care_givers), asked.source_system
    return [r for r in found if (not units or r.care_unit in units)
            and (not givers or r.care_giver in givers)
            and (not source or r.source_system == source)]


def sources(found: Overview, own_address: str) -> list[SourceStatus]:
    """The ProcessingStatus entries: one per logical address told (its worst status), then one
    at ``own_address`` when blocked information exists (see the module's docstring)."""
    now = datetime.now(UTC).strftime(_TS)
    by_address: dict[str, list[TargetResult]] = {}
    for result in found.producers.results:
        by_address.setdefault(result.target.logical_address, []).append(result)
    statuses = [_status(address, results, now) for address, results in by_address.items()]
    if found.blocked_information_exists:
        statuses.append(SourceStatus(own_address, StatusCode.NO_DATA_SYNCH_FAILED, None, now,
                                     SynchError(CausingAgent.VIRTUALIZATION_PLATFORM, FORBIDDEN,
                                                "blocked: information exists that a block "
                                                "withholds; where is not told")))
    return statuses


def _status(address: str, results: Sequence[TargetResult], now: str) -> SourceStatus:
    failed = next((r for r in results if r.failed), None)
    if failed is None:
        return SourceStatus(address, StatusCode.DATA_FROM_SOURCE, now)
    return SourceStatus(address, StatusCode.NO_DATA_SYNCH_FAILED, None, now, _error(failed))


def _error(result: TargetResult) -> SynchError:
    cause = result.cause or ""
    if result.status is Status.NO_DATA_SYNCH_FAILED:
        code = result.http_status or _FAILURE_CODES.get(cause, 500)
        return SynchError(CausingAgent.SERVICE_PRODUCER, code, f"{cause}: the producer gave no data")
    why = "not in the routing table" if cause == Cause.NOT_IN_ROUTING else "withheld by the decision"
    return SynchError(CausingAgent.VIRTUALIZATION_PLATFORM, FORBIDDEN, f"{cause}: {why}")


def _check(request: Request, interaction: Interaction, env: Envelope) -> None:
    """Addressed to the aggregating platform (VP003 none, VP004 another) and valid by the
    responder's schema (``riv.invalid_request``)."""
    own = _settings(request).riv_logical_address
    address = logical_address(env)
    if address is None:
        raise SoapFault("VP003", "No receiver specified: the LogicalAddress header is missing.")
    if address != own:
        raise SoapFault("VP004", f"No route for logical address {address}: aggregated reads are "
                        f"addressed to {own}.")
    errors = wsdl.schema_errors(interaction, env.body)
    if errors:
        trace.get_current_span().set_attribute("rivta.schema_errors", len(errors))
        raise SoapFault("riv.invalid_request", "The request does not follow the XML Schema: "
                        + "; ".join(errors))


def _max_bytes(request: Request) -> int:
    return _settings(request).riv_max_body_bytes


def _settings(request: Request) -> QuerySettings:
    settings: QuerySettings = request.app.state.settings
    return settings


for _contract in READ_CONTRACTS.values():
    serve(router, _responder(_contract))
# The request guard's refusals here (no token, too large, too many requests) are faults too.
PATHS = frozenset(c.interaction.path for c in READ_CONTRACTS.values())

