"""The directory behind every page's names: care givers and inhabitants, care units, staff.

Reference data (HSA's catalogue and SCB's population figures in production; the local stack's
file is written by the simulator: ``npo directory --out …``), loaded once from
``INDEX_DIRECTORY_FILE``; api.py serves it whole to operators with the category table (names of
the coverage statistics' data controllers, searches per 1,000 inhabitants), and as names by
HSA-id to every page, so people read names where the records hold codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CareGiver(_Frozen):
    hsa_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["region", "municipality", "private"]
    county: str = Field(pattern=r"^[0-9]{2}$")
    municipality: str | None = Field(None, pattern=r"^[0-9]{4}$")
    inhabitants: int | None = Field(None, ge=0)


class CareUnit(_Frozen):
    hsa_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    care_giver: str = Field(min_length=1, max_length=64)


class Person(_Frozen):
    hsa_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    title: str | None = Field(None, max_length=200)
    care_unit: str | None = Field(None, max_length=64)


class Directory(_Frozen):
    source: str
    inhabitants_basis: dict[str, str]
    organisations: list[CareGiver]
    care_units: list[CareUnit] = []
    people: list[Person] = []


class Names(_Frozen):
    """Names by HSA-id: what a page shows in place of a code (the code on hover)."""

    care_givers: dict[str, str]
    care_units: dict[str, CareUnit]
    people: dict[str, str]


def names(directory: Directory, *, with_people: bool) -> Names:
    """The directory's names; staff only when ``with_people`` (a patient's extract names the
    care giver and unit that read, as the law's extract does, not the person)."""
    return Names(care_givers={o.hsa_id: o.name for o in directory.organisations},
                 care_units={u.hsa_id: u for u in directory.care_units},
                 people={p.hsa_id: p.name for p in directory.people} if with_people else {})


class DirectoryError(Exception):
    """The configured directory file is missing or not a directory document."""


def load_directory(path: Path) -> Directory:
    """Read and validate the file (raises ``DirectoryError`` naming the file, not its content)."""
    try:
        return Directory.model_validate_json(path.read_bytes())
    except OSError as error:
        raise DirectoryError(f"cannot read the directory file {path}: {error.strerror}") from None
    except ValidationError as error:
        raise DirectoryError(f"{path} is not a directory document ({error.error_count()} errors)") from None
