"""CPU time of the processes a benchmark drives, per unit of work (each process measured apart).

A process is found by its pid or, for a server, by the port it listens on (``listener``), with
its children when they do the work (``tree``: PostgreSQL's backends, uvicorn's workers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import psutil


def listener(address: str) -> int:
    """The pid listening on the port of ``address`` (``host:port`` or a URL), 0 when not found."""
    port = urlsplit(address if "://" in address else f"//{address}").port
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections("tcp"):
            local = connection.laddr
            if connection.status == psutil.CONN_LISTEN and local and local.port == port:
                return connection.pid or 0
    return 0


def tree(pid: int) -> list[int]:
    """``pid`` and its children now (PostgreSQL's backends, uvicorn's workers); [] when gone."""
    if not pid:
        return []
    with contextlib.suppress(psutil.Error):
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return []


def _times(pids: Iterable[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[pid] = times.user + times.system
    return found


class Meter:
    """CPU spent by named groups of processes since the meter was made.

    A part is a function returning its pids (called at the start and at the end, so children
    started in between count from zero); a process gone by the end is not counted.
    """

    def __init__(self, parts: Mapping[str, Callable[[], Iterable[int]]]) -> None:
        self._parts = dict(parts)
        self._start = {name: _times(pids()) for name, pids in self._parts.items()}

    def spent(self) -> dict[str, float]:
        """CPU seconds per part since the start, and their ``total``."""
        spent = {}
        for name, pids in self._parts.items():
            now, before = _times(pids()), self._start[name]
            spent[name] = sum(value - before.get(pid, 0.0) for pid, value in now.items())
        return {**spent, "total": sum(spent.values())}

    def per_unit(self, units: int, *, unit: float = 1e-3) -> dict[str, float]:
        """CPU per unit of work in ``unit`` seconds (1e-3: ms; 1e-6: µs), per part and total."""
        return {name: value / max(units, 1) / unit for name, value in self.spent().items()}
