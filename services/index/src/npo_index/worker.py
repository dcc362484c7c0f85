"""``npo-index-worker`` / ``python -m npo_index.worker``: ingest only, no HTTP (scaled separately)."""

from __future__ import annotations

import asyncio

from npo_platform.service import configure_process

from .config import IndexSettings
from .consumer import run_worker


def main() -> None:
    settings = IndexSettings()
    configure_process(settings)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
