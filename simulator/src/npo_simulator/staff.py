"""The nation's named staff, for the directory: the people the local stack signs its tokens for
(``npo_deploy.tokens.demo_people``; a cross-service test keeps the two in step), so the pages
can name them. In production the HSA catalogue holds every member of staff."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    hsa_id: str
    name: str
    title: str
    care_unit: str | None = None


STAFF = (
    Person("SE2321000503-L001", "Dr Lisa Lind", "Läkare", "SE2321000503-VE001"),
    Person("SE2321000503-C001", "Cecilia Controller", "Compliance officer"),
    Person("SE2321000016-OP01", "Olle Operator", "Operator"),
    Person("SE2321000016-AD01", "Ada Admin", "Administrator"),
)
