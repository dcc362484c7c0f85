"""What every ``npo bench`` command needs: a broker and a database (the local stack's when they
answer, else scratch ones for the run), and its figures printed as lines and as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import typer

from npo_deploy import kafka, postgres
from npo_deploy.testing import scratch_kafka, scratch_postgres


def database(configured_url: str, label: str) -> AbstractContextManager[str]:
    """``configured_url`` when it answers, else a scratch PostgreSQL stopped after the run."""
    return _answering_or_scratch(
        configured_url, postgres.is_reachable, lambda: scratch_postgres(f"npo-bench-{label}-pg-"),
        "no database answering: starting a scratch PostgreSQL for this run",
    )


def broker(configured_bootstrap: str, label: str) -> AbstractContextManager[str]:
    """``configured_bootstrap`` when it answers, else a scratch Kafka broker stopped after the run."""
    return _answering_or_scratch(
        configured_bootstrap, kafka.is_reachable, lambda: scratch_kafka(f"npo-bench-{label}-kafka-"),
        "no broker answering: starting a scratch Kafka broker for this run",
    )


@contextmanager
def _answering_or_scratch(
    configured: str, answers: Callable[[str], bool],
    scratch: Callable[[], AbstractContextManager[str]], notice: str,
) -> Iterator[str]:
    if answers(configured):
        yield configured
        return
    typer.echo(notice, err=True)
    with scratch() as address:
        yield address


def report(figures: Mapping[str, Any], as_json: bool) -> None:
    """One line per figure; with ``as_json`` the same figures as one JSON object on the last line."""
    width = max((len(key) for key in figures), default=0) + 2
    for key, value in figures.items():
        typer.echo(f"{key:<{width}} {value}")
    if as_json:
        typer.echo(json.dumps(dict(figures)))
