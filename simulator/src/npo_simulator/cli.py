"""``npo simulate``: serve the simulated producers, announce the population, stream care events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from npo_platform.kafka import EventPublisher
from npo_platform.service import configure_process
from npo_platform.topics import ENGAGEMENT_UPDATES, Topic
from npo_producer import EngagementProducer
from npo_simulator.config import SimulatorSettings
from npo_simulator.organisations import Organisation
from npo_simulator.server import create_app
from npo_simulator.simulation import Progress, SinkFor, announce_population, stream
from npo_simulator.store import RecordSource

console = Console()


@asynccontextmanager
async def producer_sinks(
    bootstrap_servers: str, topic: Topic = ENGAGEMENT_UPDATES
) -> AsyncIterator[SinkFor]:
    """One SDK producer per simulated organisation, sharing one Kafka connection."""
    publisher = EventPublisher(bootstrap_servers, client_id="npo-simulator", linger_ms=20)
    await publisher.start()
    sinks: dict[str, EngagementProducer] = {}

    def sink_for(org: Organisation) -> EngagementProducer:
        if org.source_system not in sinks:
            sinks[org.source_system] = EngagementProducer(publisher, org.source_system, topic=topic)
        return sinks[org.source_system]

    try:
        yield sink_for
    finally:
        await publisher.stop()


def _report(progress: Progress) -> None:
    console.print(
        f"announced {progress.people:,} people: {progress.records:,} records, "
        f"{progress.engagements:,} engagements"
    )


async def _simulate(settings: SimulatorSettings, announce: bool, rate: float, seconds: float,
                    serve: bool) -> None:
    source = RecordSource(settings.population, settings.seed)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, source), host=settings.http_host,
                                           port=settings.http_port, log_level="warning"))
    serving = asyncio.create_task(server.serve()) if serve else None
    try:
        async with producer_sinks(settings.kafka_bootstrap_servers) as sink_for:
            if announce:
                began = time.monotonic()
                done = await announce_population(source, sink_for, on_progress=_report)
                console.print(f"announced in {time.monotonic() - began:.1f} s ({done.engagements:,})")
            if rate > 0:
                until = f" for {seconds:g} s" if seconds else ""
                console.print(f"streaming {rate:g} care events/s{until}")
                done = await stream(source, sink_for, rate=rate, seconds=seconds, seed=settings.seed)
                console.print(f"streamed {done.people:,} care events, {done.engagements:,} engagements")
            if serving is not None and seconds <= 0:
                await serving
    finally:
        if serving is not None:
            server.should_exit = True
            await serving


def simulate(
    population: Annotated[int | None, typer.Option(help="people (default SIMULATOR_POPULATION)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed (default SIMULATOR_SEED)")] = None,
    announce: Annotated[bool, typer.Option(help="publish every person's engagements first")] = True,
    rate: Annotated[float, typer.Option(min=0, help="new care events per second (0: none)")] = 10.0,
    seconds: Annotated[float, typer.Option(min=0, help="stream this long (0: until Ctrl-C)")] = 0.0,
    serve: Annotated[bool, typer.Option(help="serve the producers over HTTP meanwhile")] = True,
) -> None:
    """Simulated care providers: announce the population, then a steady stream of care events."""
    settings = SimulatorSettings()
    settings = settings.model_copy(update={
        "population": population if population is not None else settings.population,
        "seed": seed if seed is not None else settings.seed,
    })
    configure_process(settings)
    asyncio.run(_simulate(settings, announce, rate, seconds, serve))


def demo_patient() -> None:
    """Print the personnummer of a simulated patient with records at several producers
    (synthetic test data; `npo up` signs the patient's demonstration token for them)."""
    settings = SimulatorSettings()
    typer.echo(RecordSource(settings.population, settings.seed).demo_patient())
