"""``npo-index-worker [--workers N]`` / ``python -m npo_index.worker``: ingest only, no HTTP.

One process ingests on one core (Python); ``--workers N`` starts N processes in the same
consumer group, so the partitions spread over them. Every process has ``INDEX_CONSUMERS``
group members and a partition goes to one member: keep ``N * INDEX_CONSUMERS`` at or below the
partition count of the updates topic (3 by default), e.g. ``INDEX_CONSUMERS=1 --workers 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
from collections.abc import Sequence

import uvloop

from npo_platform.service import configure_process

from .config import IndexSettings
from .consumer import run_worker


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="npo-index-worker", description="npo-index ingest worker")
    parser.add_argument("--workers", type=int, default=1, help="ingest processes (one consumer group)")
    workers = parser.parse_args(argv).workers
    if workers <= 1:
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
    uvloop.run(_until_signalled(settings))  # the loop uvicorn serves npo-index on


async def _until_signalled(settings: IndexSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_worker(settings, stop)


if __name__ == "__main__":
    main()
