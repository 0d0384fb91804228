"""What the call observers measure of one call, once, and hand to every sink (mesh/observer.ts).

The observers (observer_server.py, observer_client.py) see each call from start to status; the
sinks consume what they saw: the per-call log line (sink_log.py) and the Prometheus metrics
(metrics.py), each a sink of its own, so that a call passes through one interceptor however many
things are measured of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import grpc

#: A method's kind, as go-grpc-prometheus names it in its grpc_type label.
CallType = Literal["unary", "client_stream", "server_stream", "bidi_stream"]
#: "server": a call this process serves; "client": one it makes.
Side = Literal["server", "client"]

#: Services of the mesh's own use (health, reflection, ORCA load reports), as mesh/method-path.ts
#: MESH_SERVICES: the control plane probes every endpoint every second, so their calls log at debug
#: (sink_log.py), get no trace span (tracing.py) and are never authorized (authorization.py).
MESH_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
        "xds.service.orca.v3.OpenRcaService",
    }
)


def call_type_of(is_request_streaming: bool, is_response_streaming: bool) -> CallType:
    """The kind of a method from which ways it streams."""
    if is_request_streaming:
        return "bidi_stream" if is_response_streaming else "client_stream"
    return "server_stream" if is_response_streaming else "unary"


def method_path(method: str | bytes) -> str:
    """The ``/pkg.Service/Method`` path of a call, whichever of str or bytes grpcio handed it as."""
    return method.decode() if isinstance(method, bytes) else method


def split_method(path: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` → ``("pkg.Service", "Method")``."""
    service, _, method = path.lstrip("/").rpartition("/")
    return service, method


@dataclass(frozen=True)
class CallStart:
    """A call as it starts."""

    side: Side
    type: CallType
    #: The fully-qualified service ("shop.catalog.v1.CatalogService").
    service: str
    method: str
    #: The x-request-id the call carries (the caller's, or one made for it).
    request_id: str


@dataclass(frozen=True)
class CallRecord:
    """A call as it ended."""

    call: CallStart
    code: grpc.StatusCode
    #: The status details; for the log, never more than grpcio sent or received.
    details: str
    #: From the call's start to its status, in ms (µs precision).
    duration_ms: float
    #: server: the caller's address; client: the target dialled.
    peer: str


class CallSink:
    """A consumer of observed calls. Sinks must be cheap and never raise: they run on every call.

    Subclasses override what they need; the observers count messages only for sinks that
    override ``message_received`` or ``message_sent`` (see :func:`counts_messages`).
    """

    def call_started(self, call: CallStart) -> None:
        """Called once per call as it starts (server: its handler is about to run; client: it is being sent)."""

    def message_received(self, call: CallStart) -> None:
        """Called for each message the call receives (server: a request; client: a response), as it arrives."""

    def message_sent(self, call: CallStart) -> None:
        """Called for each message the call sends, as it goes out."""

    def call_ended(self, record: CallRecord) -> None:
        """Called exactly once per call that started, as it ends: status sent or received, or cancelled."""


def counts_messages(sink: CallSink) -> bool:
    """Whether ``sink`` wants each message (it overrides ``message_received`` or ``message_sent``)."""
    kind = type(sink)
    return kind.message_received is not CallSink.message_received or kind.message_sent is not CallSink.message_sent
