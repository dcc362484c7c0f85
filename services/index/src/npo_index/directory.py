"""The organisation directory behind the operator view: care givers and inhabitants.

Reference data (HSA's catalogue and SCB's population figures in production; the local stack's
file is written by the simulator: ``npo directory --out …``), loaded once from
``INDEX_DIRECTORY_FILE``; api.py serves it to operators with the category table, so the page can
name the coverage statistics' data controllers and compute searches per 1,000 inhabitants.
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


class Directory(_Frozen):
    source: str
    inhabitants_basis: dict[str, str]
    organisations: list[CareGiver]


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
