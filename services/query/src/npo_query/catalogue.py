"""The 17 information categories a clinician may ask for, from ``npo_platform.categories``.

The clinician's web view builds its category choice from this list, so the page never repeats
the table (keys, names, which ones are available today).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from npo_platform.categories import CATEGORIES
from npo_platform.identity import ClinicianClaims

router = APIRouter(prefix="/v1", tags=["overview"])


class CategoryOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    number: int
    key: str
    name_en: str
    name_sv: str
    available: bool  # categories 12-17 are "coming" in the seed (treated like the rest)


_ALL = [CategoryOut(number=c.number, key=c.key, name_en=c.name_en, name_sv=c.name_sv,
                    available=c.available) for c in CATEGORIES]


@router.get("/categories", response_model_by_alias=True)
async def categories(claims: ClinicianClaims) -> list[CategoryOut]:
    """Every information category, in number order."""
    return _ALL
