"""What the reader is told of the producers, as FHIR OperationOutcomes (no I/O).

The same statuses and causes as the JSON answer: one OperationOutcome per producer that failed,
was withheld or is not routed, and where a block withholds anything, one that names nothing (no
category, address or care giver) and says only that blocked information exists. A denial is one
OperationOutcome: the error, then the withheld producers the reader may be told of.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from npo_platform.categories import by_key
from npo_platform.fhir import PROBLEM_SYSTEM, Resource, coding, hsa_identifier

from .domain import BLOCKED, Status, TargetResult, Told
from .fhir_records import category_coding
from .service import AccessDenied

PROCESSING_STATUS = "urn:npo:processing-status"  # DataFromSource, NoDataSynchFailed, …
CAUSE = "urn:npo:cause"  # timeout, connection_error, blocked, no_consent, …
PRODUCER = "urn:npo:fhir:producer"  # extension: logicalAddress, dataController, category, httpStatus
# FHIR's issue type per status (and per failure cause).
_FAILED = {"timeout": "timeout", "connection_error": "transient", "http_status": "transient",
           "invalid_answer": "exception"}
_TYPE = {Status.WITHHELD_BY_DECISION: "suppressed", Status.NOT_AUTHORISED_BY_ROUTING: "forbidden"}
_SAID = {Status.NO_DATA_SYNCH_FAILED: "gave no usable answer",
         Status.WITHHELD_BY_DECISION: "is withheld by the access decision",
         Status.NOT_AUTHORISED_BY_ROUTING: "is not authorised for this system by the routing table"}
BLOCKED_TEXT = "Blocked information exists; where it is held is not told."


def producer_issue(result: TargetResult) -> Resource:
    """One producer's status (a warning: the answer lacks what it holds)."""
    target, status = result.target, result.status
    failed = status is Status.NO_DATA_SYNCH_FAILED
    kind = _FAILED.get(result.cause or "", "exception") if failed else _TYPE[status]
    parts: list[Resource] = [{"url": "logicalAddress", "valueString": target.logical_address},
                             {"url": "category", "valueCoding": category_coding(target.category)}]
    if target.data_controller:
        parts.insert(1, {"url": "dataController", "valueIdentifier": hsa_identifier(target.data_controller)})
    if result.http_status is not None:
        parts.append({"url": "httpStatus", "valueInteger": result.http_status})
    name = by_key(target.category).name_sv
    text = f"{target.logical_address} ({name}) {_SAID[status]}: {result.cause}."
    return {"extension": [{"url": PRODUCER, "extension": parts}], "severity": "warning",
            "code": kind, "details": _details(status.value, result.cause, text)}


def blocked_issue() -> Resource:
    """That blocked information exists, and nothing of where or of which kind (design.md §5.5)."""
    return {"severity": "warning", "code": "suppressed",
            "details": _details(Status.WITHHELD_BY_DECISION.value, BLOCKED, BLOCKED_TEXT)}


def told_issues(told: Told, blocked_information_exists: bool) -> list[Resource]:
    """An issue per told producer without data, then the blocked one (last, as in the JSON)."""
    issues = [producer_issue(r) for r in told.results if r.status is not Status.DATA_FROM_SOURCE]
    return [*issues, blocked_issue()] if told.blocked or blocked_information_exists else issues


def outcomes(issues: Iterable[Resource]) -> list[Resource]:
    """Each issue as an OperationOutcome of its own (a searchset's outcome entries)."""
    return [{"resourceType": "OperationOutcome", "id": str(uuid.uuid4()), "issue": [issue]}
            for issue in issues]


def denial(denied: AccessDenied) -> Resource:
    """A read the access decision denies: the error with its stable code and the decision's
    reason, then what the reader may be told of the withheld producers."""
    details = _details(None, denied.reason_code, denied.detail)
    details["coding"].insert(0, coding(PROBLEM_SYSTEM, denied.code))
    error = {"severity": "error", "code": "forbidden", "details": details}
    rest = told_issues(denied.producers, denied.blocked_information_exists)
    return {"resourceType": "OperationOutcome", "issue": [error, *rest]}


def _details(status: str | None, cause: str | None, text: str) -> Resource:
    codes = ([coding(PROCESSING_STATUS, status)] if status else []) + (
        [coding(CAUSE, cause)] if cause else [])
    return {"coding": codes, "text": text}
