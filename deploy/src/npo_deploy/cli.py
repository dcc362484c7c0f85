"""The ``npo`` command line: ``npo infra up|down|status`` and ``npo token`` for the local stack."""

from __future__ import annotations

import time
from importlib.metadata import entry_points

import typer
from rich.console import Console

from npo_deploy import infra
from npo_deploy.processes import LaunchError
from npo_deploy.tokens import token_app
from npo_platform.identity import ensure_local_keypair
from npo_platform.settings import PlatformSettings

app = typer.Typer(help="National patient overview: developer tools.", no_args_is_help=True)
infra_app = typer.Typer(help="Local Kafka broker and PostgreSQL (state in NPO_STATE_DIR).")
app.add_typer(infra_app, name="infra", no_args_is_help=True)
app.add_typer(token_app, name="token", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print their figures (services add their own).")
app.add_typer(bench_app, name="bench", no_args_is_help=True)
console = Console()


def _register_service_commands() -> None:
    """Services add commands without this CLI importing them, through entry points:
    ``npo.cli`` (a Typer app, mounted as ``npo <name>``), ``npo.commands`` (a command function,
    mounted as ``npo <name>``) and ``npo.bench`` (a command function, ``npo bench <name>``)."""
    for entry in entry_points(group="npo.cli"):
        app.add_typer(entry.load(), name=entry.name)
    for entry in entry_points(group="npo.commands"):
        app.command(entry.name)(entry.load())
    for entry in entry_points(group="npo.bench"):
        bench_app.command(entry.name)(entry.load())


_register_service_commands()


@infra_app.command()
def up() -> None:
    """Start the local Kafka broker and PostgreSQL (unless the environment names others)."""
    began = time.monotonic()
    settings = PlatformSettings()
    ensure_local_keypair(settings.keys_dir)  # the local issuer's key, which every service verifies
    try:
        started = infra.up(settings, console)
    except LaunchError as error:
        console.print(f"[red]npo infra up failed:[/red] {error}")
        raise typer.Exit(1) from error
    for name, fresh in started.items():
        console.print(f"{name}: {'started' if fresh else 'already running'}")
    _print_status()
    console.print(f"ready in {time.monotonic() - began:.1f} s")


@infra_app.command()
def down() -> None:
    """Stop the local Kafka broker and PostgreSQL; their data stays for the next `up`."""
    for name, was_running in infra.down(PlatformSettings()).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@infra_app.command()
def status() -> None:
    """Show whether each server is running and answering, and where."""
    if not _print_status():
        raise typer.Exit(1)


def _print_status() -> bool:
    """Print one line per component; True when every component answers."""
    components = infra.status(PlatformSettings())
    for c in components:
        where = "local" if c.local else "external"
        running = "" if c.running is None else f"running: {_yes_no(c.running)}  "
        reachable = f"reachable: {_yes_no(c.reachable)}"
        console.print(f"{c.name:<9} {where:<9} {running}{reachable}  {c.address}", soft_wrap=True)
    return all(c.reachable for c in components)


def _yes_no(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[red]no[/red]"
