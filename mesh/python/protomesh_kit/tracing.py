"""Traces (OpenTelemetry): one span per call on each side (mesh/tracing.ts).

The call observers make them when the server or channel was given tracing: a SERVER span per
inbound call, the child of the W3C ``traceparent`` (and ``tracestate``) its metadata carries, and a
CLIENT span per outbound call, the child of the current span, whose ``traceparent`` goes out in the
call's metadata. The server span is the current span (OpenTelemetry's context, a context variable)
while the handler runs, and asyncio copies it into every task the handler starts, so a call made
while handling one is its child with nothing passed (call_context.py says why the kit is on
grpc.aio); code of the handler's own sees it as ``trace.get_current_span()``. The mesh's own
services (observer.MESH_SERVICES: health, reflection) get no span, and neither do the kit's calls
to the control plane (registry_lease.py dials without the kit's observer). Without tracing none of
this runs: the observers test for a tracer once per call.

Names and attributes follow OpenTelemetry's RPC conventions: ``package.Service/Method``,
rpc.system "grpc", rpc.service, rpc.method, rpc.grpc.status_code; a server failure
(errors.is_server_failure) sets the span's status to ERROR.

Why not opentelemetry-instrumentation-grpc's grpc.aio interceptors (0.66b2): their spans are
named with gRPC's leading slash (``/package.Service/Method``); a server span keeps
rpc.grpc.status_code 0 when the call is cancelled or its deadline passes; a client span is never
ended, so never exported, when the call is cancelled or fails before it is sent; and a response
stream whose handler writes with ``context.write`` fails UNKNOWN (the server interceptor iterates
every streaming handler as an async generator). The kit's observers already see each call from its
start to its status, so they make the spans.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .errors import is_server_failure
from .observer import CallStart
from .settings import SettingsError

#: The path of traces on an OTLP/HTTP collector, appended to OTEL_EXPORTER_OTLP_ENDPOINT (OTLP specification).
TRACES_PATH = "/v1/traces"
#: The sampler when OTEL_TRACES_SAMPLER names none (OpenTelemetry's environment specification).
DEFAULT_SAMPLER = "parentbased_always_on"
#: The instrumentation scope of the kit's spans, as the TypeScript kit's.
TRACER_NAME = "protomesh"

_PROPAGATOR = TraceContextTextMapPropagator()
_NOT_TRACED: AbstractContextManager[Any] = nullcontext()


def _attributes(call: CallStart) -> dict[str, str]:
    return {"rpc.system": "grpc", "rpc.service": call.service, "rpc.method": call.method}


def start_server_span(tracer: Tracer, call: CallStart, metadata: Iterable[Any] | None) -> Span:
    """Starts the server span of an inbound call, the child of the traceparent its metadata
    (key/value pairs) carries, if any."""
    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    parent = _PROPAGATOR.extract(carrier)
    return tracer.start_span(f"{call.service}/{call.method}", context=parent, kind=SpanKind.SERVER, attributes=_attributes(call))


def start_client_span(tracer: Tracer, call: CallStart, metadata: grpc.aio.Metadata) -> Span:
    """Starts the client span of an outbound call, the child of the current span (the inbound
    call's, inside a handler), and writes its traceparent into ``metadata``."""
    span = tracer.start_span(f"{call.service}/{call.method}", kind=SpanKind.CLIENT, attributes=_attributes(call))
    _PROPAGATOR.inject(metadata, trace.set_span_in_context(span))
    return span


def as_current(span: Span | None) -> AbstractContextManager[Any]:
    """Runs the block with ``span`` as the current span (the handler of the inbound call it traces)."""
    if span is None:
        return _NOT_TRACED
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


def end_span(span: Span, code: grpc.StatusCode, details: str) -> None:
    """Ends a call's span with its status code."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if is_server_failure(code):
        span.set_status(Status(StatusCode.ERROR, details))
    span.end()


class ProcessTracing:
    """A process's tracer and the function that flushes and stops it.

    Give it to ``create_server(..., tracing=)`` and ``dial(..., tracing=)``; the program calls
    :meth:`shutdown` once its servers have drained.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        #: The tracer every span of the process's calls is made by.
        self.tracer: Tracer = provider.get_tracer(TRACER_NAME)

    async def shutdown(self) -> None:
        """Exports the spans still buffered and stops; call it after the process's servers have drained.

        The export is a blocking HTTP request, so it runs in a thread, off the event loop."""
        await asyncio.to_thread(self._provider.shutdown)


def tracing_from_environment(env: Mapping[str, str], service_name: str) -> ProcessTracing | None:
    """The process's tracing as the standard OpenTelemetry variables configure it, or None when they
    ask for none, as tracingFromEnvironment in mesh/tracing.ts.

    Spans go to an OTLP/HTTP collector (protobuf) at OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
    OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, batched (BatchSpanProcessor), unless OTEL_SDK_DISABLED
    is "true" or OTEL_TRACES_EXPORTER names no "otlp". OTEL_SERVICE_NAME names the service (default
    ``service_name``); OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG choose the sampler
    (:func:`sampler_from_environment`). The SDK reads the rest from the process's environment
    itself: OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, _TIMEOUT, _COMPRESSION and _CERTIFICATE,
    OTEL_BSP_SCHEDULE_DELAY and the other OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES. Read once, at a
    program's edge; a value it does not know raises SettingsError naming the variable.
    """
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (f"{base.rstrip('/')}{TRACES_PATH}" if base else None)
    if not url or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = [name.strip() for name in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")]
    if "otlp" not in exporters:
        return None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name}),
        sampler=sampler_from_environment(env),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return ProcessTracing(provider)


def sampler_from_environment(env: Mapping[str, str]) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name (OpenTelemetry's environment
    specification), as samplerFromEnvironment in mesh/tracing.ts. The SDK's own reading of them logs
    a value it does not know and falls back to the default; this refuses it, naming the variable."""
    name = env.get("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER

    def ratio() -> float:
        text = env.get("OTEL_TRACES_SAMPLER_ARG")
        try:
            value = 1.0 if text is None or text == "" else float(text)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise SettingsError("OTEL_TRACES_SAMPLER_ARG", f"must be a ratio from 0 to 1, got {text!r}")
        return value

    if name == "always_on":
        return ALWAYS_ON
    if name == "always_off":
        return ALWAYS_OFF
    if name == "traceidratio":
        return TraceIdRatioBased(ratio())
    if name == "parentbased_always_on":
        return ParentBased(ALWAYS_ON)
    if name == "parentbased_always_off":
        return ParentBased(ALWAYS_OFF)
    if name == "parentbased_traceidratio":
        return ParentBased(TraceIdRatioBased(ratio()))
    raise SettingsError(
        "OTEL_TRACES_SAMPLER",
        "must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off "
        f"or parentbased_traceidratio, got {name!r}",
    )
