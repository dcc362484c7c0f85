"""HAPI FHIR's validator for the tests: its jars from Maven Central (cached in the state dir like
the broker's), the project's runner (``NpoFhirValidator.java``) compiled on first
use, and one JVM that validates many resources, since its start-up costs seconds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from npo_deploy import maven
from npo_deploy.processes import LaunchError

HAPI_FHIR_VERSION = "8.8.1"
_RUNNER = "NpoFhirValidator"
_FAILING = frozenset({"error", "fatal"})


@dataclass(frozen=True)
class Issue:
    """One finding of the validator: severity (fatal, error, warning, information), where, what."""

    severity: str
    location: str
    message: str

    @property
    def failing(self) -> bool:
        return self.severity in _FAILING

    def __str__(self) -> str:
        return f"{self.severity} at {self.location}: {self.message}"


class FhirValidator:
    """A running validator: ``validate(resource)`` returns its issues, in the order found."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self.documents = 0  # resources handed to the validator
        self.resources = 0  # those and the resources inside them (a Bundle's entries)

    def validate(self, resource: Mapping[str, Any]) -> list[Issue]:
        line = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        answer = self._exchange(line)
        self.documents += 1
        self.resources += 1 + sum(1 for e in resource.get("entry", ()) if "resource" in e)
        return [_issue(found) for found in json.loads(answer).get("issue", ())]

    def errors(self, resource: Mapping[str, Any]) -> list[Issue]:
        """Only the issues that make the resource invalid (error and fatal)."""
        return [issue for issue in self.validate(resource) if issue.failing]

    def _exchange(self, line: str) -> str:
        stdin, stdout = _pipes(self._process)
        stdin.write(line + "\n")
        stdin.flush()
        answer = stdout.readline()
        if not answer:
            raise LaunchError(f"the FHIR validator exited ({self._process.poll()}), see its stderr")
        return answer

    def close(self) -> None:
        stdin, stdout = _pipes(self._process)
        stdin.close()  # the runner ends at the end of its input
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        stdout.close()


def _pipes(process: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    assert process.stdin is not None
    assert process.stdout is not None
    return process.stdin, process.stdout


def _issue(found: Mapping[str, Any]) -> Issue:
    where = found.get("expression") or found.get("location") or ["?"]
    return Issue(str(found.get("severity", "")), str(where[0]), str(found.get("diagnostics", "")))


def ensure_runner(home: Path, console: Console | None = None) -> tuple[Path, Path]:
    """The validator's jars and the compiled runner under ``home``: (libs, classes)."""
    maven.require("java", "the FHIR validator")
    maven.require("javac", "the FHIR validator")
    libs = maven.ensure_jars(home / "libs", "fhir-validator-pom.xml", f"hapi-fhir-{HAPI_FHIR_VERSION}",
                             f"HAPI FHIR {HAPI_FHIR_VERSION} validator", console)
    source = (files("npo_deploy") / f"{_RUNNER}.java").read_bytes()
    classes = home.resolve() / f"classes-{hashlib.sha256(source).hexdigest()[:16]}"
    if not (classes / f"{_RUNNER}.class").exists():
        _compile(source, libs, classes)
    return libs, classes


def _compile(source: bytes, libs: Path, classes: Path) -> None:
    staging = classes.with_name(f"{classes.name}.partial-{os.getpid()}")  # concurrent runs: own dir
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / f"{_RUNNER}.java").write_bytes(source)
    command = ["javac", "-nowarn", "-cp", str(libs / "*"), "-d", str(staging),
               str(staging / f"{_RUNNER}.java")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LaunchError(f"javac failed on the FHIR validator runner:\n{result.stdout}{result.stderr}")
    if (classes / f"{_RUNNER}.class").exists():  # another run finished first
        shutil.rmtree(staging)
    else:
        shutil.rmtree(classes, ignore_errors=True)
        staging.rename(classes)


@contextmanager
def running_validator(home: Path, log: Path | None = None) -> Iterator[FhirValidator]:
    """Start the validator (jars fetched and runner compiled when missing); stop it afterwards.

    The JVM's own output (stderr) goes to ``log`` (default ``home/validator-<pid>.log``)."""
    libs, classes = ensure_runner(home)
    log = log or home.resolve() / f"validator-{os.getpid()}.log"
    command = ["java", "-Xmx1g", "-Djava.awt.headless=true",
               "-cp", f"{classes}{os.pathsep}{libs / '*'}", _RUNNER]  # fmt: skip
    with log.open("w") as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                   text=True, encoding="utf-8", bufsize=1)  # fmt: skip
    validator = FhirValidator(process)
    try:
        if _pipes(process)[1].readline().strip() != "ready":
            raise LaunchError(f"the FHIR validator did not start, see {log}")
        yield validator
    finally:
        validator.close()
    log.unlink(missing_ok=True)  # kept only when something went wrong
