"""What ``npo up`` hands a newcomer: a web view per role, the tokens in a file, and one overview
call that answers as printed, because the demo patient's relation and consent with the demo
clinician's unit are registered first (at the consent service, as a clinician would).

The tokens go to ``<state dir>/tokens.env`` (owner-only, ``NAME=value`` lines, so ``source``
works), with a signed-in link per view beside them, instead of 700-character lines on screen.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from npo_platform.identity import Principal, Role

TOKENS_FILE = "tokens.env"
CONSENT_DAYS = 30  # how long the demo consent lasts; a later `npo up` renews it when lapsed
# Where each role's web view is: (service, page under /ui/).
VIEWS = {
    Role.CLINICIAN: ("query", ""), Role.COMPLIANCE_OFFICER: ("audit", ""),
    Role.PATIENT: ("audit", "patient.html"), Role.OPERATOR: ("index", ""),
}


def token_variable(role: Role) -> str:
    """``CLINICIAN_TOKEN``, ``COMPLIANCE_OFFICER_TOKEN`` …"""
    return f"{role.value.upper()}_TOKEN"


def view_variable(role: Role) -> str:
    return f"{role.value.upper()}_VIEW"


def views(urls: Mapping[str, str]) -> dict[Role, str]:
    """Each role's web view among the running services (``urls``: service name → base URL)."""
    return {role: f"{urls[service]}/ui/{page}" for role, (service, page) in VIEWS.items() if service in urls}


def write_tokens(path: Path, tokens: Mapping[Role, str], links: Mapping[Role, str]) -> None:
    """``<ROLE>_TOKEN=…`` per role and ``<ROLE>_VIEW=…`` (the view signed in: the token in the
    URL fragment, which a browser never sends), readable by the owner only."""
    lines = [f"{token_variable(role)}={token}" for role, token in tokens.items()]
    lines += [f"{view_variable(role)}={shlex.quote(f'{link}#token={tokens[role]}')}"
              for role, link in links.items() if role in tokens]
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.touch(mode=0o600)
    staging.chmod(0o600)
    staging.write_text("".join(f"{line}\n" for line in lines))
    staging.replace(path)


def overview_commands(tokens_path: Path, query_url: str, patient: str) -> list[str]:
    """The ready overview call as the shell lines printed: read the tokens, then one curl."""
    body = shlex.quote(f'{{"patientId": "{patient}"}}')
    return [
        f"source {tokens_path}",
        f"curl -s {query_url}/v1/overview -H \"Authorization: Bearer ${token_variable(Role.CLINICIAN)}\" \\",
        f"     -H 'content-type: application/json' -d {body}",
    ]


@dataclass(frozen=True)
class Registered:
    relation: bool
    consent: bool


def prepare(consent_url: str, clinician: Principal, token: str, patient: str,
            now: datetime | None = None) -> Registered:
    """Register the relation and the consent the demo clinician's unit needs to read the demo
    patient's other care givers' information, each only when none is in force."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=consent_url, headers=headers, timeout=10) as client:
        standing = _ok(client.post("/v1/standing", json={"patient_id": patient}))
        relation = standing.get("relation") is None
        if relation:
            _ok(client.post("/v1/relations", json={"patient_id": patient}))
        consent = standing.get("consent") is None
        if consent:
            until = (now or datetime.now(UTC)) + timedelta(days=CONSENT_DAYS)
            _ok(client.post("/v1/consents", json={"patient_id": patient, "care_unit": clinician.care_unit,
                                                  "valid_to": until.isoformat()}))
    return Registered(relation, consent)


def _ok(answer: httpx.Response) -> dict[str, object]:
    answer.raise_for_status()
    found: dict[str, object] = answer.json()
    return found


def summary(*, links: Mapping[Role, str], people: Mapping[Role, Principal], tokens_path: Path,
            query_url: str, patient: str, ports: Mapping[str, int]) -> list[str]:
    """The block ``npo up`` ends with: short lines, no token on screen."""
    width = max(len(link) for link in links.values())
    lines = ["Web views, one per role (sign in with its token, or open its …_VIEW link):"]
    for role, link in links.items():
        lines.append(f"  {role.value.replace('_', ' '):<19}{link:<{width}}  {people[role].name}")
    roles = [role.value.upper() for role in links]
    lines += [
        f"Tokens (8 h) in {tokens_path}, owner-only NAME=value lines: {token_variable(Role.CLINICIAN)},",
        f"  {view_variable(Role.CLINICIAN)} (its view signed in), the same for {', '.join(roles[1:])};"
        f" {token_variable(Role.ADMIN)}.",
        f"  e.g. source {tokens_path} && xdg-open \"${view_variable(Role.CLINICIAN)}\"",
        f"The demo patient {patient} has records at other care givers; {people[Role.CLINICIAN].name}'s",
        "unit has a relation and consent with them. Read the patient's overview:",
        *(f"  {line}" for line in overview_commands(tokens_path, query_url, patient)),
        "API docs: http://127.0.0.1:PORT/docs, PORT = "
        + ", ".join(f"{name} {port}" for name, port in sorted(ports.items(), key=lambda item: item[1])),
    ]
    return lines
