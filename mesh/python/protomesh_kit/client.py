"""Dialling a mesh service by name (mesh/client.ts).

``dial("catalog", control_plane=...)`` returns a grpc.aio channel to ``xds:///catalog`` through a
bootstrap the kit makes (xds_bootstrap.py): the control plane tells grpcio the endpoints, their
health and the policies, and grpcio balances per call. Without a control plane, a bare name dials
``fallback_target``. Any other target ("127.0.0.1:50051", "dns:///host:port") is dialled as it is.
Every call of the channel goes through the ClientObserver (deadline, request id, cancellation, log,
go-grpc-prometheus' grpc_client_* metrics when ``metrics`` is set, a trace span when ``tracing`` is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from .logger import Logger
from .metrics import MetricsSink, metrics_of
from .names import is_service_name
from .observer import CallSink
from .observer_client import DEFAULT_DEADLINE_MARGIN_S, DEFAULT_DEADLINE_S, ClientObserver
from .sink_log import LogSink
from .tls import channel_options as tls_options
from .tls_certificate_files import TlsFiles
from .tls_channel import RenewingChannel
from .tracing import ProcessTracing
from .xds_bootstrap import install_bootstrap

def mesh_target(target: str, control_plane: str | None = None, fallback_target: str | None = None) -> str:
    """What ``target`` dials: a bare name is ``xds:///<name>`` with a control plane, ``fallback_target``
    without one; anything else is kept."""
    if not is_service_name(target):
        return target
    if control_plane:
        return f"xds:///{target}"
    if fallback_target is not None:
        return fallback_target
    raise ValueError(
        f'dial: "{target}" is a mesh service name, which needs a control plane '
        "(control_plane, from PROTOMESH_CONTROL_PLANE) or a fallback_target"
    )


def dial(
    target: str,
    *,
    control_plane: str | None = None,
    zone: str = "",
    fallback_target: str | None = None,
    logger: Logger | None = None,
    default_deadline_s: float = DEFAULT_DEADLINE_S,
    deadline_margin_s: float = DEFAULT_DEADLINE_MARGIN_S,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    metrics: bool | CollectorRegistry = False,
    sinks: Sequence[CallSink] = (),
    tracing: ProcessTracing | None = None,
    tls: TlsFiles | None = None,
    server_service: str | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target`` (see mesh_target) whose every call has a deadline
    and is logged. Must be called with the event loop running (grpc.aio binds the channel to it).

    ``metrics``: go-grpc-prometheus' grpc_client_* per method (metrics.py), in prometheus_client's
    REGISTRY (True) or the registry given; off unless set. A process's admin port (its server's
    ``admin_address``) serves them. ``sinks``: more consumers of every call (observer.py).
    ``tracing``: a CLIENT span per call (tracing.py), the child of the inbound call's span when it
    is made while handling one, its traceparent sent in the call's metadata; none without it.
    Calls with a request stream (client_stream, bidi_stream) pass the observer by.

    ``tls``: mTLS (tls.py): the channel presents ``cert_file`` and accepts only a server whose
    certificate chains to ``ca_file`` and names ``server_service`` (by default the mesh service
    ``target`` names; required for any other target). The files are read now, and looked at again
    by new calls every ``tls.refresh_interval_s``: once they changed (a renewal), new calls go on a
    new channel made from them and the old one is closed when its calls in flight have ended
    (tls_channel.py), so a long-lived channel outlives its first certificate. Plaintext unless given.
    With ``control_plane`` too, the xDS stream is mTLS with the same files (xds_bootstrap.py)."""
    channel_target = mesh_target(target, control_plane, fallback_target)
    channel_options = list(options)
    if tls is not None:
        service = server_service or target
        if not is_service_name(service):
            raise ValueError(
                f"dial: tls needs server_service, the mesh service whose certificate {target!r} must present (a DNS label such as \"catalog\")"
            )
        channel_options = [*tls_options(service), *channel_options]
    if channel_target.startswith("xds:") and control_plane:
        # Read by gRPC core when this channel's xDS client is created, i.e. now (xds_bootstrap.py);
        # with tls, the xDS stream is mTLS too, to the control plane's own port.
        install_bootstrap(control_plane, zone=zone, tls=tls)
    channel_logger = (logger or Logger()).child(target=channel_target, component="client")
    mesh_metrics = metrics_of(metrics)
    metric_sinks = [MetricsSink(mesh_metrics)] if mesh_metrics is not None else []
    observer = ClientObserver(
        [LogSink(channel_logger), *metric_sinks, *sinks],
        channel_target,
        default_deadline_s,
        deadline_margin_s,
        tracer=tracing.tracer if tracing is not None else None,
    )
    interceptor_chain = [*observer.interceptors(), *interceptors]
    if tls is not None:
        return RenewingChannel(channel_target, tls, channel_logger, options=channel_options, interceptors=interceptor_chain)
    return grpc.aio.insecure_channel(channel_target, options=channel_options, interceptors=interceptor_chain)
