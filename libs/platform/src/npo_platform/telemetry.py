"""OpenTelemetry tracing (HTTP, Kafka headers) and structured JSON logs that never show a PNR."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.environment_variables import OTEL_TRACES_SAMPLER
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, SamplingResult
from opentelemetry.util.types import Attributes
from pythonjsonlogger.json import JsonFormatter

# Twelve digits that may be a personnummer/samordningsnummer, with or without separator.
_PNR_LIKE = re.compile(r"(?<!\d)(\d{8})[-+]?(\d{4})(?!\d)")
_REDACTED = "[pnr-redacted]"
_WIRE_LOGGERS = ("aiokafka", "kafka")
# uvicorn's loggers; the access log's lines hold each request's path and query string.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    """Mask anything shaped like a personal identity number (defence in depth for logs)."""
    return _PNR_LIKE.sub(_REDACTED, text)


def configure_tracing(
    service_name: str, *, otlp_endpoint: str | None = None, exporter: SpanExporter | None = None
) -> TracerProvider:
    """Install a tracer provider for the process; export via OTLP/HTTP when an endpoint is set.

    Spans are recorded only while they go somewhere: until the provider has a span processor
    (an exporter, here or added later) every span is a non-recording one. Trace and span ids
    are made all the same, so the trace id still travels in W3C headers and Kafka records and
    reaches access events and log lines; what is saved is building spans nobody reads (CPU on
    every overview of the query service; compare ``npo bench query --quick`` with
    ``OTEL_TRACES_SAMPLER`` always_off and parentbased_always_on). Once
    exporting, sampling is parent-based always-on; ``OTEL_TRACES_SAMPLER``, when set, decides
    instead (the SDK's own reading of it).
    """
    resource = Resource.create({"service.name": service_name})
    provider = (TracerProvider(resource=resource) if os.environ.get(OTEL_TRACES_SAMPLER)
                else _RecordingWhenExported(resource))
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


class _WhenExported(Sampler):
    """Parent-based always-on once spans are exported; before that, none is recorded."""

    def __init__(self) -> None:
        self.exporting = False

    def should_sample(self, parent_context: otel_context.Context | None, trace_id: int, name: str,
                      kind: trace.SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[trace.Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> SamplingResult:
        sampler = _EXPORTING if self.exporting else ALWAYS_OFF
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links,
                                     trace_state)

    def get_description(self) -> str:
        return f"WhenExported{{{'ParentBased{AlwaysOn}' if self.exporting else 'AlwaysOff'}}}"


_EXPORTING = ParentBased(ALWAYS_ON)


class _RecordingWhenExported(TracerProvider):
    """A tracer provider whose spans are recorded from its first span processor on."""

    def __init__(self, resource: Resource) -> None:
        self._when_exported = _WhenExported()
        super().__init__(resource=resource, sampler=self._when_exported)

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self._when_exported.exporting = True


def server_telemetry(*, excluded_paths: Iterable[str] = ()) -> TelemetryConfig:
    """FastAPI's own request tracing: one SERVER span per request, nothing else.

    It replaces opentelemetry-instrumentation-fastapi, which cost CPU on every request for what
    nobody reads (ASGI middleware, an internal span per ``http.receive``/``http.send`` message, metrics).
    The span continues the caller's W3C trace context, is current while the route runs (so
    the service's own spans join it), is named ``METHOD route`` and carries method, scheme,
    ``url.path``, ``http.route`` and status. Off: FastAPI's per-operation spans, its HTTP
    metrics (no meter provider is configured) and its OTel log records of exceptions
    (exception texts may quote input; the JSON logs redact them, an OTel exporter would not).
    """
    excluded = frozenset(excluded_paths)

    def exclude(scope: MutableMapping[str, Any]) -> bool:
        return scope.get("path") in excluded

    return TelemetryConfig(tracing=True, metrics=False, logs=False, operation_spans=False,
                           auto_configure=False, exclude=exclude)


def inject_headers(headers: list[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    """Add the current trace context (traceparent, tracestate) to Kafka headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    out = list(headers or [])
    out.extend((key, value.encode()) for key, value in carrier.items())
    return out


def extract_context(headers: Sequence[tuple[str, bytes]]) -> otel_context.Context:
    """The trace context a Kafka record carries in its headers."""
    carrier = {key: value.decode(errors="replace") for key, value in headers}
    return propagate.extract(carrier)


def current_trace_id() -> str:
    """Hex id of the current trace, or an empty string outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


class _TraceAndRedact(logging.Filter):
    """Adds trace and span ids to every record and masks PNR-shaped numbers in its message."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        record.service = self.service
        record.trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else ""
        record.span_id = format(span_context.span_id, "016x") if span_context.is_valid else ""
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class _RedactingJsonFormatter(JsonFormatter):
    """JSON lines; exception text is redacted too, since exceptions may quote their input."""

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return redact(text if isinstance(text, str) else "\n".join(text))


def configure_logging(service: str, level: str = "INFO") -> None:
    """Structured JSON logs on stderr with service, trace and span ids; PNRs masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceAndRedact(service))
    handler.setFormatter(
        _RedactingJsonFormatter(
            "{asctime}{levelname}{name}{message}{service}{trace_id}{span_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Kafka clients' DEBUG records dump the wire: record keys (patient ids) and payloads. They are
    # never wanted in a health-care service's logs, whatever level the service runs at.
    for wire_logger in _WIRE_LOGGERS:
        logging.getLogger(wire_logger).setLevel(max(logging.INFO, root.level))
    # The HTTP server's lines go through the same handler: masked like every other line.
    for server_logger in map(logging.getLogger, _SERVER_LOGGERS):
        server_logger.handlers[:] = []
        server_logger.propagate = True
