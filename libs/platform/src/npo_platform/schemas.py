"""Base model for HTTP request bodies: unknown fields refused, and no NUL characters in text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class RequestModel(BaseModel):
    """A request body. PostgreSQL text cannot hold NUL, so NUL is refused here (a 422 problem)
    rather than failing in a store (a 500); unknown fields are refused too."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        values = data.values() if isinstance(data, dict) else ()
        if any("\x00" in v for v in values if isinstance(v, str)):
            raise ValueError("text must not contain NUL characters")
        return data
