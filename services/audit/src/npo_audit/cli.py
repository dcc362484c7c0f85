"""``npo audit …``: verify the chain, run the worker (mounted through the ``npo.cli`` entry point)."""

from __future__ import annotations

import asyncio
from functools import partial

import typer
from rich.console import Console

from npo_platform.service import configure_process, run_until_signalled

from .config import AuditSettings
from .main import open_store, run_worker
from .service import Report, verify_log
from .signing import load_verifier

audit_app = typer.Typer(help="The tamper-evident access log.", no_args_is_help=True)
console = Console()


async def _verify(settings: AuditSettings) -> Report:
    async with open_store(settings) as (_, store):
        return await verify_log(store, load_verifier(settings.keys_dir))


@audit_app.command()
def verify(show: int = typer.Option(20, help="How many findings to print.")) -> None:
    """Check every chain and signed checkpoint; name the first altered, deleted or inserted record."""
    report = asyncio.run(_verify(AuditSettings()))
    for chain, count in sorted(report.verified.items()):
        console.print(f"chain {chain}: {count} records")
    if report.ok:
        console.print("[green]audit log verified: every chain intact and sealed[/green]")
        return
    for finding in report.findings[:show]:
        console.print(f"[red]{finding.describe()}[/red]", soft_wrap=True)
    console.print(f"[red]{len(report.findings)} finding(s); first: {report.findings[0].describe()}[/red]",
                  soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command()
def worker() -> None:
    """Consume access and consent events into the log until SIGTERM/SIGINT."""
    settings = AuditSettings()
    configure_process(settings)
    run_until_signalled(partial(run_worker, settings))
