"""Traces (OpenTelemetry), set up in one place for every app process, without Flask.

Off unless ``TRACING=on`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``OTEL_SDK_DISABLED=true``
turns it off whatever else says). When on:

- spans go over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``)
  is set, with the SDK's standard ``OTEL_EXPORTER_OTLP_*`` settings; otherwise to JSON lines
  in ``TRACES_DIR`` (``var/traces``): one file per process, ``<service>.<pid>.jsonl``, one
  span per line;
- sampling is the SDK's: ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default
  parent-based, always on; ``parentbased_traceidratio`` with ``0.1`` keeps one trace in ten,
  and a service follows the decision of the one that called it);
- the service name is the process's (``marquee-app``, ``-scheduler``, ``-worker``,
  ``-live``) unless ``OTEL_SERVICE_NAME`` says otherwise.

``setup`` runs in the process that makes the spans, after any fork (gunicorn builds
the app in each worker, so each has its own provider and export thread); SQLAlchemy
engines are instrumented as they are built (``app.bootstrap``), redis-py as a whole.
The outbox carries the writing request's context (``current_carrier``) to the relay,
which publishes in a child span (``child_span``) and hands ``traceparent`` on in the
message headers, which the worker continues the same way.

When off, nothing here loads the SDK: the API's no-op tracer makes no spans, and
``current_carrier`` answers None at the cost of a context lookup.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace

_state: dict = {"pid": None, "provider": None}


def enabled() -> bool:
    """Whether this process's environment asks for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return (os.environ.get("TRACING", "off").strip().lower() in ("on", "1", "true", "yes")
            or bool(_otlp_endpoint()))


def _otlp_endpoint() -> str:
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "").strip()


def active() -> bool:
    """Whether this process set tracing up (after a fork: whether the child did)."""
    return _state["pid"] == os.getpid()


def one_line(span) -> str:
    """A span as one JSON line (the JSON-lines exporter's format)."""
    return span.to_json(indent=None) + os.linesep


def setup(service: str) -> bool:
    """Set tracing up for this process if the environment asks for it (idempotent per
    process). Returns whether it is on."""
    if active():
        return True
    if _state["provider"] is not None:
        # forked from a process that set up (nothing here does: gunicorn builds the app
        # in each worker): the SDK restarts the export thread in the child; keep it
        _state["pid"] = os.getpid()
        return True
    if not enabled():
        return False
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))  # its sampler: the env's
    provider.sampler = _no_stray_statements(provider.sampler)
    if _otlp_endpoint():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        folder = os.environ.get("TRACES_DIR") or os.path.join("var", "traces")
        os.makedirs(folder, exist_ok=True)
        out = open(os.path.join(folder, f"{name}.{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
        exporter = ConsoleSpanExporter(service_name=name, out=out, formatter=one_line)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state.update(pid=os.getpid(), provider=provider)
    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    return True


def _no_stray_statements(sampler):
    """``sampler``, except that a client span (a SQL statement, a Redis command, an SMTP
    send) with no span around it starts no trace: the scheduler's jobs and polls, the
    live process's stream reads and the worker's bookkeeping would otherwise make a
    one-span trace of each statement, every second. Requests, messages and the relay's
    publishes start or continue traces as the sampler says."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class NoStrayStatements(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):
            if kind is trace.SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"NoStrayStatements{{{sampler.get_description()}}}"

    return NoStrayStatements()


def instrument_engine(engine) -> None:
    """Spans for the statements of ``engine`` (when tracing is on in this process)."""
    if active():
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # 0.66b1 declares SQLAlchemy < 2.1 only; the engine events it hooks are 2.1's too
        # (tests/e2e/test_traces.py checks that statements make spans)
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=_state["provider"], skip_dep_check=True)


def shutdown() -> None:
    """Export what is left (a process about to exit)."""
    if active():
        _state["provider"].shutdown()


def current_carrier() -> dict | None:
    """The W3C headers (``traceparent``, ``tracestate``) of the span in hand, or None
    when there is none (tracing off, or outside any request)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict = {}
    propagate.inject(carrier)
    return carrier or None


def ids() -> tuple[str, str] | None:
    """The trace and span ids (hex) of the span in hand, for the logs."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@contextmanager
def child_span(carrier: dict | None, name: str, *, kind: str = "INTERNAL",
               attributes: dict | None = None) -> Iterator[dict]:
    """A span continuing the context in ``carrier`` (W3C headers: an outbox row's, a
    message's), current inside the block. Yields the headers that carry it on (empty
    when there is nothing to carry)."""
    parent = propagate.extract(carrier) if carrier else None
    tracer = trace.get_tracer("marquee")
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind[kind],
                                      attributes=attributes) as span:
        headers: dict = {}
        if span.get_span_context().is_valid:
            propagate.inject(headers)
        yield headers

