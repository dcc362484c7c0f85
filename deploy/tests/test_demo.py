"""The block `npo up` ends with: short lines, the tokens in an owner-only file that `source` reads,
and the overview call it prints (tests/test_newcomer.py runs that call against a nation)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from npo_deploy import demo
from npo_deploy.tokens import demo_people
from npo_platform.identity import Role

URLS = {"index": "http://127.0.0.1:8101", "query": "http://127.0.0.1:8102", "audit": "http://127.0.0.1:8104"}
TOKENS = {role: f"header.{role.value}-{'x' * 600}.signature" for role in Role}


def _block(tokens_path: Path) -> list[str]:
    return demo.summary(links=demo.views(URLS), people=demo_people("196803040010"), tokens_path=tokens_path,
                        query_url=URLS["query"], patient="196803040010",
                        ports={"index": 8101, "query": 8102, "audit": 8104})


def test_the_tokens_file_is_owner_only_and_sourced_by_a_shell(tmp_path: Path) -> None:
    path = tmp_path / ".npo" / "tokens.env"
    links = demo.views(URLS)
    demo.write_tokens(path, TOKENS, links)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    echo = "; ".join(f'echo "${demo.token_variable(r)} ${demo.view_variable(r)}"' for r in links)
    shown = subprocess.run(["bash", "-c", f"source {path} && {echo}"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert shown == [f"{TOKENS[r]} {link}#token={TOKENS[r]}" for r, link in links.items()]
    assert all(line.count("=") >= 1 for line in path.read_text().splitlines())


def test_the_block_names_a_view_per_role_and_shows_no_token(tmp_path: Path) -> None:
    block = _block(Path(".npo/tokens.env"))
    text = "\n".join(block)
    for role, link in demo.views(URLS).items():
        assert any(link in line and demo_people()[role].name in line for line in block), role
    assert all(len(line) <= 110 for line in block), max(block, key=len)
    assert "eyJ" not in text
    assert "x" * 100 not in text
    assert "source .npo/tokens.env" in text
    assert len(block) <= 16


def test_the_block_prints_the_overview_call_as_it_is_run(tmp_path: Path) -> None:
    block = _block(Path(".npo/tokens.env"))
    commands = demo.overview_commands(Path(".npo/tokens.env"), URLS["query"], "196803040010")
    start = block.index(f"  {commands[0]}")
    assert block[start:start + len(commands)] == [f"  {line}" for line in commands]
    assert commands[0] == "source .npo/tokens.env"
    assert commands[1].startswith("curl -s http://127.0.0.1:8102/v1/overview ")
    assert commands[1].endswith("\\")
    assert "Bearer $CLINICIAN_TOKEN" in commands[1]
    assert "196803040010" in commands[2]
