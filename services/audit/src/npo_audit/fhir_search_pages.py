"""Continuation tokens of the AuditEvent search: the search and a page's position, encrypted.

A paging link must not carry a personal identity number, yet has to continue a search by one. A
token is the search and position as JSON, encrypted and authenticated with Fernet (AES-128-CBC,
HMAC-SHA256, its issue time inside) under a key in the state dir: opaque to whoever sees the URL
(an access log, a trace, a browser history), unforgeable, valid ``ttl_s`` after it was issued, and
only for the officer it was issued to. Nothing is kept on the server, so any replica continues
any search and nothing needs expiring or cleaning up.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from npo_platform.fhir_search import SearchError
from npo_platform.identity import ensure_secret

from .fhir_search_params import AuditEventSearch
from .store import Cursor, Position

KEY_FILE = "audit-fhir-page.key"
_VERSION = 1


class PageTokens:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._fernet = Fernet(key)
        self._ttl_s = ttl_s

    @classmethod
    def in_dir(cls, keys_dir: Path, ttl_s: int) -> PageTokens:
        return cls(ensure_secret(keys_dir, KEY_FILE, Fernet.generate_key), ttl_s)

    def issue(self, officer: str, search: AuditEventSearch, position: Position) -> str:
        cursor = position.cursor
        body = {"v": _VERSION, "o": officer, "s": search_json(search), "b": position.backward,
                "c": [cursor.event_time.isoformat(), cursor.event_id] if cursor else None}
        return self._fernet.encrypt(json.dumps(body, separators=(",", ":")).encode()).decode()

    def open(self, token: str, officer: str) -> tuple[AuditEventSearch, Position]:
        """The search and position of ``token``; one issued to ``officer`` and not expired."""
        try:
            body = json.loads(self._fernet.decrypt(token.encode(), ttl=self._ttl_s))
            if body["v"] != _VERSION or body["o"] != officer:
                raise ValueError("another version or officer")
            cursor = Cursor(datetime.fromisoformat(body["c"][0]), body["c"][1]) if body["c"] else None
            return _search(body["s"]), Position(cursor, bool(body["b"]))
        except (InvalidToken, ValueError, KeyError, TypeError, UnicodeError):
            raise SearchError("search.page_invalid", "The _page is not one issued to you, or it has "
                              "expired: start the search again.", "invalid") from None


def search_json(search: AuditEventSearch) -> dict[str, Any]:
    """The search as JSON (a token's body; a recorded read's filter)."""
    return {
        "p": sorted(search.patients) if search.patients is not None else None,
        "a": [sorted(agents) for agents in search.agents],
        "f": search.recorded_from.isoformat() if search.recorded_from else None,
        "t": search.recorded_to.isoformat() if search.recorded_to else None,
        "x": sorted(search.outcomes) if search.outcomes is not None else None,
        "n": search.count,
    }


def _search(found: dict[str, Any]) -> AuditEventSearch:
    return AuditEventSearch(
        patients=frozenset(found["p"]) if found["p"] is not None else None,
        agents=tuple(frozenset(agents) for agents in found["a"]),
        recorded_from=datetime.fromisoformat(found["f"]) if found["f"] else None,
        recorded_to=datetime.fromisoformat(found["t"]) if found["t"] else None,
        outcomes=frozenset(found["x"]) if found["x"] is not None else None,
        count=found["n"],
    )
