"""Detached local server processes: spawn, find by pid file, wait for readiness, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psutil

LOOPBACK = "127.0.0.1"

T = TypeVar("T")

# Detached servers this process spawned, kept referenced: a collected Popen of a running child
# warns (ResourceWarning, an error in strict test runs). terminate() reaps and forgets them.
_children: dict[int, subprocess.Popen[bytes]] = {}


class LaunchError(RuntimeError):
    """A local server failed to install, start or become ready; the message holds its log tail."""


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in a worker thread.

    A thread keeps the caller's event loop (pytest-asyncio's session loop, say) untouched,
    so the sync launchers work from CLI code, sync fixtures and async tests alike.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def spawn_detached(command: Sequence[str], log_file: Path, pid_file: Path,
                   env: Mapping[str, str] | None = None) -> int:
    """Start ``command`` in its own session (it outlives this process); record its pid.
    ``env``: its environment, when not this process's."""
    with log_file.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start ====\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    _children[process.pid] = process
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def spawned_alive(pid: int) -> bool:
    """Whether a server this process spawned (``spawn_detached``) is still running."""
    child = _children.get(pid)
    return child is not None and child.poll() is None


def find_process(pid_file: Path, marker: str) -> psutil.Process | None:
    """The live process named in ``pid_file`` if its command line contains ``marker``.

    The marker guards against a stale pid file whose pid the OS has since reused.
    """
    try:
        process = psutil.Process(int(pid_file.read_text().strip()))
        return process if is_alive(process) and marker in " ".join(process.cmdline()) else None
    except (OSError, ValueError, psutil.Error):
        return None


def is_alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def terminate(process: psutil.Process, timeout: float) -> None:
    """SIGTERM the process group, wait up to ``timeout`` seconds, then SIGKILL it."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(10)
    except (psutil.Error, ChildProcessError):
        pass
    if (child := _children.pop(process.pid, None)) is not None:
        child.poll()  # records the exit status psutil's wait has collected


def _signal_group(process: psutil.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # spawned with start_new_session: pgid == pid
    except ProcessLookupError:
        pass
    except PermissionError:
        process.send_signal(sig)


def wait_until(ready: Callable[[], bool], alive: Callable[[], bool], timeout: float) -> bool:
    """Poll ``ready`` until it holds (True), the process dies or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if not alive():
            return False
        time.sleep(0.2)
    return False


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port the OS has just reported free (for isolated test servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])
