"""HAPI FHIR's validator harness: the session's JVM finds real errors and passes valid resources."""

from __future__ import annotations

from typing import Any

from npo_deploy.fhir_validator import FhirValidator

AUDIT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"}


def _audit_event(agent_type: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent", "type": AUDIT_TYPE, "recorded": "2026-01-01T10:00:00+00:00",
        "agent": [{"type": {"coding": [agent_type]}, "who": {"display": "Anna"}, "requestor": True}],
        "source": {"observer": {"display": "npo-query"}},
    }


def test_a_code_its_system_does_not_have_is_an_error(fhir_validator: FhirValidator) -> None:
    # The audit export's old agent type: PROV is a RoleClass code, not a ParticipationType one.
    wrong = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PROV"}

    errors = fhir_validator.errors(_audit_event(wrong))

    assert [e.location for e in errors] == ["AuditEvent.agent[0].type"]
    assert "PROV" in errors[0].message


def test_a_valid_resource_has_no_error_and_bundle_entries_are_counted(fhir_validator: FhirValidator) -> None:
    right = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "urn:uuid:0b0a4d8e-6c4e-4f67-9a35-3e8e7f3c2b10",
                         "resource": _audit_event(right)}]}
    before = (fhir_validator.documents, fhir_validator.resources)

    assert fhir_validator.errors(_audit_event(right)) == []
    assert fhir_validator.errors(bundle) == []
    assert (fhir_validator.documents, fhir_validator.resources) == (before[0] + 2, before[1] + 3)


def test_a_bundle_entry_without_full_url_is_an_error(fhir_validator: FhirValidator) -> None:
    right = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _audit_event(right)}]}

    assert fhir_validator.errors(bundle)
