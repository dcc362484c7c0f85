"""The command line: ``npo-index-worker [--workers N]`` / ``python -m npo_index``, ingest only, no HTTP.

One process ingests on one core (Python); ``--workers N`` starts N processes in the same
consumer group, so the partitions spread over them. Every process has ``INDEX_CONSUMERS``
group members and a partition goes to one member: keep ``N * INDEX_CONSUMERS`` at or below the
partition count of the updates topic (3 by default), e.g. ``INDEX_CONSUMERS=1 --workers 3``.
"""

from __future__ import annotations

import multiprocessing
import signal
from functools import partial
from typing import Annotated

import typer

from npo_platform.service import configure_process, run_until_signalled

from .config import IndexSettings
from .main import run_worker


def ingest(
    workers: Annotated[int, typer.Option(min=1, help="ingest processes (one consumer group)")] = 1,
) -> None:
    """npo-index ingest worker: consume engagement updates until SIGTERM/SIGINT."""
    if workers == 1:
        run_one()
        return
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=run_one, name=f"npo-index-worker-{n}") for n in range(workers)]
    for child in children:
        child.start()

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each child leaves the group and stops cleanly

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()


def run_one() -> None:
    """One ingest process until SIGTERM/SIGINT (then it leaves the consumer group)."""
    settings = IndexSettings()
    configure_process(settings)
    run_until_signalled(partial(run_worker, settings))


def main() -> None:
    """Console entry point ``npo-index-worker``."""
    typer.run(ingest)
