"""Prometheus metrics of a protomesh process (mesh/metrics.ts), on prometheus_client.

The per-call ones carry go-grpc-prometheus' names, labels and help texts, as the TypeScript kit's
do, so that the dashboards and alerts written for grpc-go services read protomesh's unchanged:

- grpc_server_started_total, grpc_server_handled_total (with grpc_code),
  grpc_server_msg_received_total, grpc_server_msg_sent_total, grpc_server_handling_seconds;
- the same five with grpc_client_ for the calls a process makes;
- labels grpc_type (unary, client_stream, server_stream, bidi_stream), grpc_service (the
  fully-qualified service), grpc_method, and grpc_code as grpc-go spells codes (OK, Canceled,
  DeadlineExceeded, ...); the histograms have Prometheus' default buckets, as go-grpc-prometheus.

Everything goes to one registry per process, prometheus_client's REGISTRY unless a registry is
given, so that one scrape of the admin port (admin.py) sees every server and client in it, and an
application already exposing REGISTRY gets the mesh's metrics with its own. Python's own (process,
platform, GC: prometheus_client's default collectors) are in REGISTRY from its import on, and are
added to another registry with the mesh's metrics.

prometheus_client also writes a ``<name>_created`` gauge beside each counter and histogram (the
series' creation time, which OpenMetrics carries with the counter); they are left as the library
makes them (see ``prometheus_client.disable_created_metrics``, which is process-wide).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector

from .observer import CallRecord, CallSink, CallStart

#: gRPC status codes as grpc-go's ``codes.Code.String()`` spells them: the grpc_code label values.
GRPC_CODE_NAMES: tuple[str, ...] = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)

#: Buckets of the handling-time histograms (s): Prometheus' DefBuckets, go-grpc-prometheus' default
#: (prometheus_client's own default has 0.075, 0.75 and 7.5 besides).
HANDLING_SECONDS_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_CALL_LABELS = ("grpc_type", "grpc_service", "grpc_method")
_HANDLED_LABELS = (*_CALL_LABELS, "grpc_code")

#: go-grpc-prometheus' help texts, per side (as mesh/metrics.ts has them).
_HELP = {
    "server": {
        "started": "Total number of RPCs started on the server.",
        "handled": "Total number of RPCs completed on the server, regardless of success or failure.",
        "received": "Total number of RPC stream messages received on the server.",
        "sent": "Total number of gRPC stream messages sent by the server.",
        "handling": "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    },
    "client": {
        "started": "Total number of RPCs started on the client.",
        "handled": "Total number of RPCs completed by the client, regardless of success or failure.",
        "received": "Total number of RPC stream messages received by the client.",
        "sent": "Total number of gRPC stream messages sent by the client.",
        "handling": "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
    },
}


def grpc_code_name(code: grpc.StatusCode) -> str:
    """The grpc_code label of a status code (``Code(n)`` for one outside the 17, as grpc-go prints it)."""
    number = code.value[0]
    return GRPC_CODE_NAMES[number] if 0 <= number < len(GRPC_CODE_NAMES) else f"Code({number})"


@dataclass(frozen=True)
class SideMetrics:
    """One side's five go-grpc-prometheus metrics."""

    started: Counter
    handled: Counter
    received: Counter
    sent: Counter
    handling: Histogram


@dataclass(frozen=True)
class MeshMetrics:
    """The mesh's metrics in one registry, made once (prometheus_client refuses a name registered twice)."""

    registry: CollectorRegistry
    server: SideMetrics
    client: SideMetrics


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, MeshMetrics] = weakref.WeakKeyDictionary()
_making = threading.Lock()


def mesh_metrics(registry: CollectorRegistry = REGISTRY) -> MeshMetrics:
    """The mesh's metrics in ``registry`` (default: prometheus_client's REGISTRY), made on first use."""
    with _making:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _make_metrics(registry)
            _by_registry[registry] = metrics
        return metrics


def _make_metrics(registry: CollectorRegistry) -> MeshMetrics:
    def side(name: str) -> SideMetrics:
        help_of = _HELP[name]
        return SideMetrics(
            started=Counter(f"grpc_{name}_started_total", help_of["started"], _CALL_LABELS, registry=registry),
            handled=Counter(f"grpc_{name}_handled_total", help_of["handled"], _HANDLED_LABELS, registry=registry),
            received=Counter(f"grpc_{name}_msg_received_total", help_of["received"], _CALL_LABELS, registry=registry),
            sent=Counter(f"grpc_{name}_msg_sent_total", help_of["sent"], _CALL_LABELS, registry=registry),
            handling=Histogram(
                f"grpc_{name}_handling_seconds", help_of["handling"], _CALL_LABELS, registry=registry, buckets=HANDLING_SECONDS_BUCKETS
            ),
        )

    if registry is not REGISTRY:
        # Python's own, as REGISTRY has them; kept if the registry's owner added them already.
        for add in (ProcessCollector, PlatformCollector, GCCollector):
            try:
                add(registry=registry)
            except ValueError:  # "Duplicated timeseries in CollectorRegistry"
                pass
    return MeshMetrics(registry=registry, server=side("server"), client=side("client"))


def metrics_of(option: bool | CollectorRegistry | None, admin_address: str | None = None) -> MeshMetrics | None:
    """The metrics a kit server or client counts into, from its ``metrics`` and ``admin_address`` options:
    off with False, REGISTRY with True, the registry given; unset, on when there is an admin port."""
    if option is False:
        return None
    if option is True:
        return mesh_metrics()
    if option is not None:
        return mesh_metrics(option)
    return mesh_metrics() if admin_address is not None else None


#: Methods whose bound label children are kept, per sink (a process serves and calls a fixed set).
MAX_BOUND_METHODS = 1_024


@dataclass
class _MethodMetrics:
    """One method's label children, bound once (``labels()`` validates and hashes its values each time)."""

    started: Counter
    received: Counter
    sent: Counter
    handling: Histogram
    labels: tuple[str, str, str]
    handled: dict[grpc.StatusCode, Counter] = field(default_factory=dict)


class MetricsSink(CallSink):
    """Counts calls into ``metrics``: started, handled by code, messages each way, handling time.

    Give one to a server and to clients (their ``metrics`` options); it tells the two sides apart
    by the call.
    """

    def __init__(self, metrics: MeshMetrics) -> None:
        self._metrics = metrics
        self._bound: dict[tuple[str, str, str, str], _MethodMetrics] = {}

    def _method(self, call: CallStart) -> _MethodMetrics:
        key = (call.side, call.type, call.service, call.method)
        found = self._bound.get(key)
        if found is None:
            side = self._metrics.server if call.side == "server" else self._metrics.client
            labels = (call.type, call.service, call.method)
            found = _MethodMetrics(
                started=side.started.labels(*labels),
                received=side.received.labels(*labels),
                sent=side.sent.labels(*labels),
                handling=side.handling.labels(*labels),
                labels=labels,
            )
            if len(self._bound) < MAX_BOUND_METHODS:
                self._bound[key] = found
        return found

    def call_started(self, call: CallStart) -> None:
        self._method(call).started.inc()

    def message_received(self, call: CallStart) -> None:
        self._method(call).received.inc()

    def message_sent(self, call: CallStart) -> None:
        self._method(call).sent.inc()

    def call_ended(self, record: CallRecord) -> None:
        method = self._method(record.call)
        handled = method.handled.get(record.code)
        if handled is None:
            side = self._metrics.server if record.call.side == "server" else self._metrics.client
            handled = side.handled.labels(*method.labels, grpc_code_name(record.code))
            method.handled[record.code] = handled
        handled.inc()
        method.handling.observe(record.duration_ms / 1000)
