"""Logs are JSON with trace ids and never show a personal identity number."""

from __future__ import annotations

import json
import logging

import pytest

from npo_platform.telemetry import configure_logging, extract_context, inject_headers, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("patient 191212121212 read", "patient [pnr-redacted] read"),
        ("patient 19121212-1212", "patient [pnr-redacted]"),
        ("order 1234567890123 kept", "order 1234567890123 kept"),  # 13 digits: not a PNR
        ("unit SE2321000016-1234", "unit SE2321000016-1234"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_json_log_lines_mask_pnrs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("npo-test")
    try:
        raise ValueError("no such patient 191212121212")
    except ValueError:
        logging.getLogger("t").exception("lookup of %s failed", "201001012383")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "npo-test"
    assert line["level"] == "ERROR"
    assert "201001012383" not in json.dumps(line)
    assert "191212121212" not in json.dumps(line)
    assert "[pnr-redacted]" in line["message"]


def test_headers_round_trip_without_active_span() -> None:
    assert inject_headers([("a", b"1")]) == [("a", b"1")]
    assert extract_context([]) is not None


def test_kafka_wire_dumps_stay_out_of_debug_logs() -> None:
    """aiokafka's DEBUG records quote record keys, which are patient ids."""
    configure_logging("npo-test", "DEBUG")
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("npo_platform").getEffectiveLevel() == logging.DEBUG


def test_spans_are_recorded_only_when_they_are_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from npo_platform.telemetry import configure_tracing

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    unexported = configure_tracing("npo-test").get_tracer("t")
    with unexported.start_as_current_span("request") as span:
        assert not span.is_recording()
        context = span.get_span_context()
        assert context.is_valid  # a real trace id all the same: it travels, and is logged
        child = unexported.start_span("call")
        assert child.get_span_context().trace_id == context.trace_id
        assert f"{context.trace_id:032x}" in dict(inject_headers())["traceparent"].decode()

    exporter = InMemorySpanExporter()
    exported = configure_tracing("npo-test", exporter=exporter).get_tracer("t")
    with exported.start_as_current_span("request") as span:
        assert span.is_recording()

    provider = configure_tracing("npo-test")  # a processor added later (as tests add theirs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("later") as span:
        assert span.is_recording()
    assert "later" in [s.name for s in exporter.get_finished_spans()]

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")  # an explicit sampler is obeyed
    assert configure_tracing("npo-test").get_tracer("t").start_span("x").is_recording()
