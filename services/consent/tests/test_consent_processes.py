"""How npo-consent is served: CONSENT_WORKERS processes, each built by ``served_app``; its
request span continues the caller's trace; the decision's answer keeps its documented shape."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from npo_consent import main
from npo_consent.config import ConsentSettings


def test_run_serves_the_factory_with_the_configured_workers(
    monkeypatch: pytest.MonkeyPatch, served_options: dict[str, Any]
) -> None:
    monkeypatch.setenv("CONSENT_WORKERS", "3")
    served = served_options

    main.run()

    assert served["app"] == "npo_consent.main:served_app"
    assert served["factory"] is True
    assert served["workers"] == 3
    assert served["port"] == ConsentSettings().http_port


def test_workers_must_be_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENT_WORKERS", "0")
    with pytest.raises(ValueError, match="workers"):
        ConsentSettings()


def test_served_app_configures_telemetry_and_freezes_start_up_objects(
    monkeypatch: pytest.MonkeyPatch, collector_calls: list[str]
) -> None:
    calls = collector_calls
    monkeypatch.setattr(main, "configure_process", lambda config: calls.append("telemetry"))

    app = main.served_app()

    assert calls == ["telemetry", "freeze"]
    assert app.title == "NPO consent and access decisions"


async def test_a_request_span_continues_the_callers_trace_and_health_is_not_traced() -> None:
    import httpx

    spans = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # OTel allows one provider per process
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    caller = "0af7651916cd43dd8448eb211c80319c"
    transport = httpx.ASGITransport(app=main.create_app(ConsentSettings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://npo-consent.test") as client:
        await client.get("/health")
        # No body: one without a token is refused by the request guard before any route (its
        # span then names no route).
        refused = await client.post("/v1/decisions",
                                    headers={"traceparent": f"00-{caller}-b7ad6b7169203331-01"})
    spans.shutdown()
    [span] = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert refused.status_code == 401
    assert span.name == "POST /v1/decisions"
    assert span.context is not None
    assert format(span.context.trace_id, "032x") == caller
    assert span.attributes is not None
    assert span.attributes["url.path"] == "/v1/decisions"
    assert span.attributes["http.response.status_code"] == 401
