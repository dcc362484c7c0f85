"""A faust-streaming worker computing the repeated-refusals rule over a Kafka topic, for
test_audit_faust_windows.py: faust's table (changelog-backed, rebuilt after a restart) holds each
user's refused attempts of the last hour, and ``domain_rules.refusal_crossings`` (the rule the
audit's sweep uses) finds the crossing attempts. Alerts carry the crossing attempt's event id, so
a repeated alert is harmless; each is appended to ``FAUST_ALERTS`` as a JSON line.

Run as ``python faust_refusals.py worker``; the test sets the environment: ``FAUST_BROKER``,
``FAUST_APP_ID``, ``FAUST_SOURCE``, ``FAUST_ALERTS``, ``FAUST_DATA_DIR`` and, to make the alert
sink fail once (a database briefly down), the marker file ``FAUST_FAIL_ONCE``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import faust

from npo_audit.domain import Entry, Kind
from npo_audit.domain_rules import REFUSED, WINDOW, refusal_crossings
from npo_platform.settings import KafkaSecurity

LIMIT = 3


def _credentials() -> faust.SASLCredentials | None:
    security = KafkaSecurity()
    if security.security_protocol == "PLAINTEXT":
        return None
    password = security.sasl_password.get_secret_value() if security.sasl_password else None
    return faust.SASLCredentials(username=security.sasl_username, password=password,
                                 mechanism=security.sasl_mechanism)


app = faust.App(
    os.environ["FAUST_APP_ID"], broker=f"kafka://{os.environ['FAUST_BROKER']}",
    broker_credentials=_credentials(), store="memory://", datadir=os.environ["FAUST_DATA_DIR"],
    processing_guarantee="at_least_once", web_enabled=False, topic_partitions=1,
    broker_commit_every=1, broker_commit_interval=0.5,
)
attempts = app.topic(os.environ["FAUST_SOURCE"], key_type=str, value_type=bytes, value_serializer="raw",
                     partitions=1)
recent = app.Table("refusals", default=list, partitions=1)  # per user: [(iso time, event id)]


def _entry(event_id: str, user: str, at: datetime) -> Entry:
    return Entry(kind=Kind.CONSENT, event_id=event_id, event_time=at, patient_id="", user_hsa_id=user,
                 care_unit="", care_giver="", activity=0, basis=0, outcome=REFUSED, purpose="",
                 categories=(), payload=b"")


def _alert(alert: dict[str, Any]) -> None:
    """The sink (the audit's flag table in production): fails once while the marker exists."""
    marker = Path(os.environ["FAUST_FAIL_ONCE"])
    if marker.exists():
        marker.unlink()
        raise ConnectionError("alert sink unavailable")
    with open(os.environ["FAUST_ALERTS"], "a", encoding="utf-8") as out:
        out.write(json.dumps(alert) + "\n")
        out.flush()
        os.fsync(out.fileno())


@app.agent(attempts)
async def refusals(stream: faust.Stream[bytes]) -> None:
    async for user, raw in stream.items():
        attempt = json.loads(raw)
        at = datetime.fromisoformat(attempt["at"])
        kept = [(t, i) for t, i in recent[user] if datetime.fromisoformat(t) > at - 2 * WINDOW]
        if attempt["event_id"] not in {i for _, i in kept}:
            kept.append((attempt["at"], attempt["event_id"]))
        recent[user] = kept
        entries = [_entry(i, user, datetime.fromisoformat(t)) for t, i in kept]
        for flag in refusal_crossings(entries, LIMIT):
            if flag.event_id == attempt["event_id"]:
                _alert({"id": f"{flag.rule.value}:{flag.event_id}", "user": user})


if __name__ == "__main__":
    app.main()

