"""What every ``npo bench`` command needs: a broker and a database (the local stack's when they
answer, else scratch ones for the run), and its figures printed as lines and as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import typer

from npo_deploy import kafka, postgres
from npo_deploy.testing import scratch_kafka, scratch_postgres


@contextmanager
def database(configured_url: str, label: str) -> Iterator[str]:
    """``configured_url`` when it answers, else a scratch PostgreSQL stopped after the run."""
    if postgres.is_reachable(configured_url):
        yield configured_url
        return
    typer.echo("no database answering: starting a scratch PostgreSQL for this run", err=True)
    with scratch_postgres(f"npo-bench-{label}-pg-") as url:
        yield url


@contextmanager
def broker(configured_bootstrap: str, label: str) -> Iterator[str]:
    """``configured_bootstrap`` when it answers, else a scratch Kafka broker stopped after the run."""
    if kafka.is_reachable(configured_bootstrap):
        yield configured_bootstrap
        return
    typer.echo("no broker answering: starting a scratch Kafka broker for this run", err=True)
    with scratch_kafka(f"npo-bench-{label}-kafka-") as bootstrap:
        yield bootstrap


def report(figures: Mapping[str, Any], as_json: bool) -> None:
    """One line per figure; with ``as_json`` the same figures as one JSON object on the last line."""
    width = max((len(key) for key in figures), default=0) + 2
    for key, value in figures.items():
        typer.echo(f"{key:<{width}} {value}")
    if as_json:
        typer.echo(json.dumps(dict(figures)))
