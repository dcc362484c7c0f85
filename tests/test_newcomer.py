"""What `npo up` prints works as printed: against the whole nation, the demo state `npo up`
prepares (the demo clinician's relation and consent with the demo patient) and the printed
shell lines (source the tokens file, one curl) answer the overview with other care givers'
records. Without the prepared state the same lines are refused."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from npo_bench.nation import Nation, running_nation
from npo_deploy import demo
from npo_platform.identity import Role

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation")) as running:
        yield running


def _run_printed(nation: Nation, tokens: Path) -> dict[str, Any]:
    """The printed lines, pasted into bash as they are."""
    script = "\n".join(demo.overview_commands(tokens, nation.query, nation.patient))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True)
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_the_printed_overview_call_answers_with_other_care_givers_records(
        nation: Nation, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.env"
    demo.write_tokens(tokens, {role: nation.token(role) for role in nation.people}, {})
    refused = _run_printed(nation, tokens)
    assert refused["status"] == 403, refused
    assert refused["reasonCode"] == "no_relation", refused

    clinician = nation.people[Role.CLINICIAN]
    first = demo.prepare(nation.consent, clinician, nation.token(Role.CLINICIAN), nation.patient)
    assert first == demo.Registered(relation=True, consent=True)
    again = demo.prepare(nation.consent, clinician, nation.token(Role.CLINICIAN), nation.patient)
    assert again == demo.Registered(relation=False, consent=False), "a second npo up adds nothing"

    answer = _run_printed(nation, tokens)
    assert answer["outcome"] == "allowed", answer
    givers = {record["document"]["header"]["accountableHealthcareProfessional"]
              ["healthcareProfessionalCareGiverHSAId"] for record in answer["records"]}
    assert givers - {clinician.care_giver}, "records of other care givers, read under the consent"
