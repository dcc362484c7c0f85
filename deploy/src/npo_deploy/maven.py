"""Jars from Maven Central, resolved once by ``mvn`` into a folder of the state dir and reused."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.resources import as_file, files
from pathlib import Path

from rich.console import Console

from npo_deploy import processes
from npo_deploy.processes import LaunchError

_JARS_MARKER = ".complete"


def ensure_jars(libs: Path, pom: str, jars_id: str, what: str, console: Console | None = None) -> Path:
    """Fetch the runtime jars of the package's ``pom`` into ``libs`` once; later calls reuse them.

    ``jars_id`` names the versions: a folder marked with another id is fetched again.
    """
    libs = libs.resolve()  # mvn resolves relative paths against the pom's folder
    if jars_complete(libs, jars_id):
        return libs
    require("mvn", what)
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = libs.with_name(f"{libs.name}.partial-{os.getpid()}")  # concurrent runs: own dir
    status = f"Fetching {what} jars from Maven Central (first run only)…"
    with (console or Console(stderr=True)).status(status):
        _copy_dependencies(pom, staging)
    (staging / _JARS_MARKER).write_text(jars_id + "\n")
    if jars_complete(libs, jars_id):  # another run finished first
        shutil.rmtree(staging)
    else:
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def jars_complete(libs: Path, jars_id: str) -> bool:
    marker = libs / _JARS_MARKER
    return marker.exists() and marker.read_text().strip() == jars_id


def _copy_dependencies(pom_name: str, target: Path) -> None:
    log = target.with_name(f"mvn-{os.getpid()}.log")
    with as_file(files("npo_deploy") / pom_name) as pom, log.open("w") as out:
        command = ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                   f"-DoutputDirectory={target}", "-DincludeScope=runtime"]  # fmt: skip
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise LaunchError(f"mvn failed ({result.returncode}), see {log}:\n{processes.log_tail(log)}")
    log.unlink()


def require(tool: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise LaunchError(f"`{tool}` is not on PATH; {what} needs it")
