"""Entry point of npo-simulator: serve the simulated producers over HTTP."""

from __future__ import annotations

from npo_platform.service import configure_process, serve
from npo_simulator.config import SimulatorSettings
from npo_simulator.server import create_app


def run() -> None:
    """Console entry point ``npo-simulator``."""
    config = SimulatorSettings()
    configure_process(config)
    serve(create_app(config), config.http_host, config.http_port)
