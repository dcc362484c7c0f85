"""The ``npo`` command line: ``npo infra up|down|status`` and ``npo token`` for the local stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import typer
from rich.console import Console

from npo_deploy import compose, credentials, demo, infra, k8s, stack
from npo_deploy.processes import LaunchError
from npo_deploy.tokens import demo_people, token_app
from npo_platform.identity import Principal, Role, ensure_local_keypair, issue_token
from npo_platform.settings import PlatformSettings

app = typer.Typer(help="National patient overview: developer tools.", no_args_is_help=True)
infra_app = typer.Typer(help="Local Kafka broker and PostgreSQL (state in NPO_STATE_DIR).")
app.add_typer(infra_app, name="infra", no_args_is_help=True)
app.add_typer(token_app, name="token", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print their figures (from the npo_bench package).")
app.add_typer(bench_app, name="bench", no_args_is_help=True)
k8s_app = typer.Typer(help="The Kubernetes deployment in deploy/k8s (Kustomize).")
app.add_typer(k8s_app, name="k8s", no_args_is_help=True)
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


@app.callback()
def _local_credentials() -> None:
    """The CLI's own Kafka and database clients act as the local stack's administrator and
    database owner (unless the environment names other servers, with their credentials)."""
    settings = PlatformSettings()
    if infra.local_kafka(settings) is not None:
        credentials.use_admin(infra.secrets_dir(settings))
    if (database := infra.local_postgres(settings)) is not None:
        os.environ["DATABASE_URL"] = database.url


# `--kafka-nodes 3`: a replicated three-node cluster; default KAFKA_NODES, else one node.
KAFKA_NODES = typer.Option(None, "--kafka-nodes", min=1, help="Kafka nodes (default: KAFKA_NODES or 1)")


def _use_kafka_nodes(nodes: int | None) -> None:
    """Through the environment, so the settings of this process and of every service it
    starts name the same nodes."""
    if nodes is not None:
        os.environ["KAFKA_NODES"] = str(nodes)


@infra_app.command()
def up(kafka_nodes: int | None = KAFKA_NODES) -> None:
    """Start the local Kafka node(s) and PostgreSQL (unless the environment names others)."""
    began = time.monotonic()
    _use_kafka_nodes(kafka_nodes)
    settings = PlatformSettings()
    ensure_local_keypair(settings.keys_dir)  # the local issuer's key, which every service verifies
    try:
        started = infra.up(settings, console)
    except LaunchError as error:
        console.print(f"[red]npo infra up failed:[/red] {error}", soft_wrap=True)  # advice to paste
        raise typer.Exit(1) from error
    for name, fresh in started.items():
        console.print(f"{name}: {'started' if fresh else 'already running'}")
    _print_status()
    console.print(f"ready in {time.monotonic() - began:.1f} s")


@app.command("up")
def up_all(
    announce: bool = typer.Option(True, help="announce the simulated population to the index"),
    kafka_nodes: int | None = KAFKA_NODES,
) -> None:
    """Run the whole system: Kafka, PostgreSQL, every service and the simulated producers."""
    began = time.monotonic()
    up(kafka_nodes)
    settings = PlatformSettings()
    try:
        services = stack.up(settings, console)
    except LaunchError as error:
        console.print(f"[red]npo up failed:[/red] {error}")
        raise typer.Exit(1) from error
    indexed = _indexed_engagements(settings, services)
    if announce and indexed == 0:
        _announce()
    elif announce:
        console.print(f"the index already holds {indexed:,} engagements: not announcing again "
                      "(`npo simulate --no-serve --rate 0` does)")
    _welcome(settings, services)
    for service in services:
        if service.name in RIV_ADDRESSES and service.riv_logical_address:
            console.print(f"{RIV_ADDRESSES[service.name]}: {service.riv_logical_address}",
                          markup=False, highlight=False)
    console.print(f"The system is up in {time.monotonic() - began:.1f} s; `make down` stops it.")


def _announce() -> None:
    """The simulated population's engagements to the index (``npo simulate``), its progress
    under a spinner and its last line kept: a fresh state dir takes a couple of minutes."""
    npo = str(Path(sys.executable).parent / "npo")
    quiet = {**os.environ, "NPO_LOG_LEVEL": "WARNING"}  # its clients' connection logs
    with console.status("Announcing the simulated population's engagements to the index…"):
        done = subprocess.run([npo, "simulate", "--no-serve", "--rate", "0"], env=quiet,
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        console.print(f"[red]announcing failed:[/red]\n{done.stdout}{done.stderr}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "announced")


def _indexed_engagements(settings: PlatformSettings, services: list[stack.Service]) -> int:
    """How many engagements the running index holds (its coverage statistics), 0 if unknown."""
    index = next((s for s in services if s.name == "index"), None)
    if index is None:
        return 0
    private, _ = ensure_local_keypair(settings.keys_dir)
    who = Principal(sub="SE2321000016-NPOUP", name="npo up", roles=frozenset({Role.OPERATOR}))
    token = issue_token(private.read_bytes(), who, timedelta(minutes=5))
    try:
        answer = httpx.get(f"{index.url}/coverage", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
        answer.raise_for_status()
        return sum(int(entry["engagements"]) for entry in answer.json())
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


# The services whose RIV-TA responders answer to a logical address of their own (README).
RIV_ADDRESSES = {"index": "riv index logical address", "query": "riv aggregating logical address"}


def _demo_patient() -> str | None:
    """A simulated patient with records at several producers (``npo demo-patient``)."""
    npo = str(Path(sys.executable).parent / "npo")
    done = subprocess.run([npo, "demo-patient"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _welcome(settings: PlatformSettings, services: list[stack.Service]) -> None:
    """A development token per role (8 hours, the local issuer's) written to the tokens file,
    the demo patient readable by the demo clinician, and the short block that says so."""
    patient = _demo_patient()
    if patient is None:
        console.print("[yellow]no simulated patient found (`npo demo-patient`): no demo state[/yellow]")
        return
    key = ensure_local_keypair(settings.keys_dir)[0].read_bytes()
    people = demo_people(patient)
    tokens = {role: issue_token(key, who, timedelta(hours=8)) for role, who in people.items()}
    urls = {s.name: s.url for s in services}
    links = demo.views(urls)
    path = settings.state_dir / demo.TOKENS_FILE
    demo.write_tokens(path, tokens, links)
    try:
        demo.prepare(urls["consent"], people[Role.CLINICIAN], tokens[Role.CLINICIAN], patient)
    except (httpx.HTTPError, KeyError) as error:
        console.print(f"[red]registering the demo relation and consent failed:[/red] {error!r}")
    block = demo.summary(links=links, people=people, tokens_path=path, query_url=urls.get("query", ""),
                         patient=patient, ports={s.name: s.port for s in services})
    for line in block:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("down")
def down_all(kafka_nodes: int | None = KAFKA_NODES) -> None:
    """Stop every service and the infrastructure; data stays for the next `npo up`."""
    _use_kafka_nodes(kafka_nodes)
    stack.down(PlatformSettings(), console)
    down(kafka_nodes)


@infra_app.command()
def down(kafka_nodes: int | None = KAFKA_NODES) -> None:
    """Stop the local Kafka node(s) and PostgreSQL; their data stays for the next `up`."""
    _use_kafka_nodes(kafka_nodes)
    for name, was_running in infra.down(PlatformSettings()).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@infra_app.command()
def status(kafka_nodes: int | None = KAFKA_NODES) -> None:
    """Show whether each server is running and answering, and where."""
    _use_kafka_nodes(kafka_nodes)
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


@k8s_app.command("generate")
def k8s_generate() -> None:
    """Write the generated deployment files from the code (topics, ACLs, services): deploy/k8s
    and the compose file's deploy/compose."""
    for path in [*k8s.generate(), *compose.generate()]:
        console.print(f"wrote {path}")


@app.command("compose-env")
def compose_env() -> None:
    """Write .env for docker-compose.yml: the local stack's generated passwords (made when
    missing), which the compose file requires (it has no default password)."""
    target = Path(".env")
    target.touch(mode=0o600)
    target.chmod(0o600)
    target.write_text(compose.env(infra.secrets_dir(PlatformSettings())))
    console.print(f"wrote {target.resolve()}")


@k8s_app.command("secrets")
def k8s_secrets() -> None:
    """Create the files of deploy/k8s's Secrets where missing: the token issuer's public key,
    the query's signing key pair, a random password per database role and the keys a service's
    replicas share (deploy/k8s/secrets/, never committed)."""
    _, public = ensure_local_keypair(PlatformSettings().keys_dir)
    for path in k8s.write_secrets(public):
        console.print(f"wrote {path}")
