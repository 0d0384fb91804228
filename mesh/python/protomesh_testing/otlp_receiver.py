"""An OTLP/HTTP trace collector for tests (test/support/otlp-receiver.ts): POST /v1/traces on
127.0.0.1:0, in a thread, each request decoded with OpenTelemetry's own protobuf messages
(opentelemetry-proto) and its spans kept in the order they arrived."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

#: Where OTLP/HTTP exporters post traces.
TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, with the service.name of the resource that sent it."""

    service: str
    name: str
    #: "SERVER", "CLIENT", "INTERNAL"...
    kind: str
    trace_id: str
    span_id: str
    #: "" for a root span.
    parent_span_id: str
    attributes: dict[str, Any]
    #: "STATUS_CODE_UNSET", "STATUS_CODE_OK" or "STATUS_CODE_ERROR".
    status: str


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return None if field is None else getattr(value, field)


def _attributes(attributes: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(attributes)
    return {pair.key: _value(pair.value) for pair in pairs}


def decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """The spans of one export request, in its order."""
    received = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received.append(
                    ReceivedSpan(
                        service=service,
                        name=span.name,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                        status=Status.StatusCode.Name(span.status.code),
                    )
                )
    return received


class OtlpReceiver:
    """The collector; ``url`` is what OTEL_EXPORTER_OTLP_ENDPOINT is set to. ``close()`` when done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        #: Export requests that were not POST /v1/traces with an ExportTraceServiceRequest.
        self.refused: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                is_protobuf = self.headers.get("Content-Type") == "application/x-protobuf"
                if self.path != TRACES_PATH or not is_protobuf:
                    receiver.refused.append(f"{self.path} {self.headers.get('Content-Type')}")
                    self.send_error(404 if self.path != TRACES_PATH else 415)
                    return
                spans = decode_spans(ExportTraceServiceRequest.FromString(body))
                with receiver._lock:
                    receiver._spans.extend(spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the tests' output is pytest's, not an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The collector's base URL, http://127.0.0.1:<port> (exporters append /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def close(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
