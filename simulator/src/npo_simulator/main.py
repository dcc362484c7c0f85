"""Entry point of npo-simulator: serve the simulated producers over HTTP."""

from __future__ import annotations

import uvicorn

from npo_platform.service import configure_process
from npo_simulator.config import SimulatorSettings
from npo_simulator.server import create_app


def run() -> None:
    """Console entry point ``npo-simulator``."""
    config = SimulatorSettings()
    configure_process(config)
    # Open event streams end at most 10 s into a shutdown.
    uvicorn.run(create_app(config), host=config.http_host, port=config.http_port,
                timeout_graceful_shutdown=10)
