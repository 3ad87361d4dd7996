"""The proxy's span of each request, and the W3C ``traceparent`` it forwards.

Off unless ``TRACING=on`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, as for the app's
processes (``OTEL_SDK_DISABLED=true`` turns it off): then ``ProxyServer.tracer`` is None,
no span is made, nothing is loaded, and ``traceparent``/``tracestate`` pass through like
any other header. When on, each request gets a server span that continues a valid
incoming ``traceparent`` (a malformed one is dropped: the span starts a new trace), and
the backend gets the span's ``traceparent`` instead (``tracestate`` passes unchanged).
Spans go where the app's go: OTLP/HTTP when an endpoint is set, else JSON lines in
``TRACES_DIR`` (``var/traces/marquee-proxy.<pid>.jsonl``); sampling from
``OTEL_TRACES_SAMPLER``/``_ARG``. The proxy knows no app code, so this is its own copy
of that small set-up.
"""
from __future__ import annotations

import os

SERVICE = "marquee-proxy"


def enabled() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return (os.environ.get("TRACING", "off").strip().lower() in ("on", "1", "true", "yes")
            or bool(_endpoint()))


def _endpoint() -> str:
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "").strip()


class ProxyTracer:
    """Starts and ends the proxy's spans (one per request cycle)."""

    def __init__(self, provider) -> None:
        from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("marquee.proxy")
        self.propagator = TraceContextTextMapPropagator()
        self._server, self._error, self._in_context = SpanKind.SERVER, StatusCode.ERROR, set_span_in_context

    def start(self, method: str, target: bytes, headers: list):
        """The span of a request whose headers are ``headers``: a child of a valid
        incoming ``traceparent``, else the root of a new trace."""
        carrier = {}
        for name, value in headers:
            lname = name.lower()
            if lname == b"traceparent" or lname == b"tracestate":
                carrier[lname.decode()] = value.decode("latin-1")
        parent = self.propagator.extract(carrier) if carrier else None
        path = target.split(b"?", 1)[0].decode("latin-1")
        return self.tracer.start_span(f"{method} proxy", context=parent, kind=self._server,
                                      attributes={"http.request.method": method, "url.path": path})

    def traceparent(self, span) -> bytes:
        """The header line that carries ``span`` to the backend."""
        carrier: dict = {}
        self.propagator.inject(carrier, context=self._in_context(span))
        return b"traceparent: " + carrier.get("traceparent", "").encode()

    def end(self, span, *, pool: str, backend: str, status: int, tries: int, error: str) -> None:
        if span.is_recording():
            span.update_name(f"{span.name.split(' ', 1)[0]} {pool}")
            span.set_attributes({"marquee.pool": pool, "marquee.backend": backend,
                                 "http.response.status_code": status, "marquee.tries": tries})
            if status >= 500 or error:
                span.set_status(self._error, error or None)
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def setup() -> ProxyTracer | None:
    """The proxy's tracer if the environment asks for traces, else None."""
    if not enabled():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if _endpoint():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        folder = os.environ.get("TRACES_DIR") or os.path.join("var", "traces")
        os.makedirs(folder, exist_ok=True)
        out = open(os.path.join(folder, f"{name}.{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
        exporter = ConsoleSpanExporter(service_name=name, out=out,
                                       formatter=lambda span: span.to_json(indent=None) + os.linesep)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return ProxyTracer(provider)
